"""VQ-VAE on MNIST (28x28 grayscale, 7x7 codes).

    python train_vqvae.py --dataset mnist --data-folder ~/data/mnist --output-folder runs/mnist

Data: the four IDX files (train-images-idx3-ubyte[.gz], ...) in --data-folder.
`:tiny` is a seconds-long CPU variant.
"""
from configs import common


def get_config(arg=None):
  c = common.vqvae_config(dataset='mnist', image_size=28, channels=1)
  if arg == 'tiny':
    common.tiny(c)
  elif arg:
    raise ValueError(f'unknown variant {arg!r} (known: tiny)')
  return c.lock()
