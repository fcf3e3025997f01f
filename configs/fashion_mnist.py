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
  :cpu    the 2-core CPU budget (configs/common.py CPU_*: hidden 128, batch 32, 8000
          steps, cosine lr 1e-3 after a 300-step warm-up, beta 0.1, EMA decay 0.95;
          chosen by the screens in benchmarks/README.md). Measured with
          configs/prior.py:cpu by `ROOT=runs/budget8k OUT=benchmarks/results/cpu-budget
          PRETRAINED=pretrained bash benchmarks/run_results.sh fashion-mnist` (2-core AMD
          EPYC, no accelerator, quiet, 2026-12-04; benchmarks/results/cpu-budget/): test
          PSNR 25.32 dB, SSIM 0.884, 512/512 codes used, 7.1 min + prior 12.4 min =
          19.6 min. pretrained/fashion-mnist is this run. (The earlier values, lr 7e-4,
          beta 1, EMA 0.99: 24.16 dB on the same machine.)
  :tiny   seconds-long, for tests.
"""
from configs import common


def get_config(arg=None):
  c = common.vqvae_config(dataset='fashion-mnist', image_size=28, channels=1)
  return common.variant(c, arg)
