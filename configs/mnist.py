"""VQ-VAE on MNIST (28x28 grayscale, 7x7 codes).

    python train_vqvae.py --dataset mnist --data-folder ~/data/mnist --output-folder runs/mnist

Data: the four IDX files (train-images-idx3-ubyte[.gz], ...) in --data-folder.
Variants (see configs/common.py): `:paper` pytorch-vqvae's recipe exactly, `:cpu`
the 2-core CPU step budget (wall time and metrics: to be measured), `:tiny` a
seconds-long CPU variant for tests.
"""
from configs import common


def get_config(arg=None):
  c = common.vqvae_config(dataset='mnist', image_size=28, channels=1)
  return common.variant(c, arg)
