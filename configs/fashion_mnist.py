"""VQ-VAE on Fashion-MNIST (28x28 grayscale, 7x7 codes).

    python train_vqvae.py --dataset fashion-mnist --output-folder runs/fmnist

Data: the four IDX files in --data-folder, else /usr/share/datasets/fashion-mnist/
(Debian: apt-get install dataset-fashion-mnist). `:tiny` is a seconds-long CPU variant.
"""
from configs import common


def get_config(arg=None):
  c = common.vqvae_config(dataset='fashion-mnist', image_size=28, channels=1)
  if arg == 'tiny':
    common.tiny(c)
  elif arg:
    raise ValueError(f'unknown variant {arg!r} (known: tiny)')
  return c.lock()
