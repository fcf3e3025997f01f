"""VQ-VAE on CIFAR-10 (32x32 RGB, 8x8 codes).

    python train_vqvae.py --dataset cifar10 --data-folder ~/data/cifar10 --output-folder runs/cifar10

Data: cifar-10-batches-py/ (or cifar-10-python.tar.gz) from
https://www.cs.toronto.edu/~kriz/cifar.html in --data-folder, else a prepared
tensorflow-datasets `cifar10`. valid = the last 5,000 training images.
Variants (see configs/common.py): `:paper` pytorch-vqvae's recipe exactly, `:cpu`
the 2-core CPU step budget (wall time and metrics: to be measured), `:tiny` a
seconds-long CPU variant.
"""
from configs import common


def get_config(arg=None):
  c = common.vqvae_config(dataset='cifar10', image_size=32, channels=3)
  return common.variant(c, arg)
