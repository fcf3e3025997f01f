"""VQ-VAE on Fashion-MNIST (28x28 grayscale, 7x7 codes).

    python train_vqvae.py --dataset fashion-mnist --output-folder runs/fmnist
    python train_vqvae.py --config configs/fashion_mnist.py:paper --output-folder runs/fmnist-paper
    python train_vqvae.py --config configs/fashion_mnist.py:cpu --output-folder runs/fmnist-cpu

Data: the four IDX files in --data-folder, else /usr/share/datasets/fashion-mnist/
(Debian: apt-get install dataset-fashion-mnist).

Variants:
  (none)  the default recipe: hidden 256, K 512, batch 128, Adam 2e-4, 100 epochs,
          EMA codebook + restarts + data init. Hardware, wall time, test PSNR: to be
          measured.
  :paper  pytorch-vqvae's recipe exactly (codebook loss, U(-1/K, 1/K) init, beta 1,
          Adam 2e-4 constant, no restarts, hidden 256, batch 128).
  :cpu    the 2-core CPU budget (configs/common.py CPU_*: hidden 128, 6000 steps,
          cosine lr 7e-4 after a 300-step warm-up). Measured (2-core Intel Xeon with
          AMX, no accelerator, 2026-12-02; benchmarks/results/cpu-recipes/): test PSNR
          24.18 dB, SSIM 0.851, 512/512 codes used; 182 img/s quiet, so ~70 min for
          the 6000 steps (over the 60-min two-stage budget). Shipped as
          pretrained/fashion-mnist (with configs/prior.py:cpu as -prior).
  :tiny   seconds-long, for tests.
"""
from configs import common


def get_config(arg=None):
  c = common.vqvae_config(dataset='fashion-mnist', image_size=28, channels=1)
  return common.variant(c, arg)
