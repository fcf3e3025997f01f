"""VQ-VAE on Atari 2600 Boxing frames (84x84 RGB, 21x21 codes).

    python train_vqvae.py --dataset atari-boxing --output-folder runs/boxing
    python train_vqvae.py --config configs/atari_boxing.py:cpu --output-folder runs/boxing-cpu

Data: generated on the first run with gymnasium + ale-py (their wheels ship the
ROM) under a random policy: `num_frames` frames, deterministic for `seed`,
resumable, stored in --data-folder (default ~/.cache/vqvae-jax/atari-boxing/).
Splits are 80/10/10 in time order.
Variants (see configs/common.py): `:paper` pytorch-vqvae's recipe exactly; `:cpu`
the 2-core CPU budget: an 84x84x3 frame costs ~9x the FLOPs of a 28x28x1 image,
so CPU_MAX_STEPS steps at batch CPU_BATCH below (about one pass over the 48,000
training frames); its prior is `configs/prior.py:cpu_atari` (21x21 grids cost ~9x
a 7x7 one). Both stages:
    python train_vqvae.py --config configs/atari_boxing.py:cpu --output-folder runs/boxing-cpu
    python train_prior.py --config configs/prior.py:cpu_atari --model runs/boxing-cpu \
        --output-folder runs/boxing-cpu-prior
or `bash benchmarks/run_results.sh atari-boxing`. Measured (2-core AMD EPYC, Zen 5, no
accelerator, 2026-12-04, 5-11% of the CPU used by other work;
benchmarks/results/cpu-recipes/atari-boxing.*.json): VQ-VAE 15.3 min + prior 13.1 min =
28.4 min; test PSNR 34.28 dB, SSIM 0.970, 512/512 codes used; the prior codes the test
grids at 0.274 bits per code against a unigram entropy of 7.81; unconditional samples in
benchmarks/results/cpu-recipes/atari-boxing-samples.png. pretrained/atari-boxing is
this run. (The previous values, lr 7e-4, beta 1, EMA decay 0.99: 32.73 dB on a quiet
Xeon in 40.9 min.)
`:tiny` a seconds-long CPU variant.
"""
from configs import common

CPU_MAX_STEPS = 800
CPU_BATCH = 64
# lr, beta and EMA decay: the :cpu values of configs/common.py (lr 1e-3, beta 0.1, EMA
# decay 0.95, chosen on Fashion-MNIST). On Atari frames, 800 steps (2026-12-04, EPYC):
# test PSNR 34.28 dB, SSIM 0.970, against 32.68 dB, SSIM 0.959 with the previous values
# (lr 7e-4, beta 1, EMA decay 0.99).


def _tiny(c):
  common.tiny(c)
  c.image_size = 32
  c.num_frames = 200


def get_config(arg=None):
  c = common.vqvae_config(dataset='atari-boxing', image_size=84, channels=3)
  c.num_frames = 60000
  return common.variant(c, arg, (
      ('tiny', _tiny),
      ('cpu', lambda c: common.cpu(c, max_steps=CPU_MAX_STEPS, batch_size=CPU_BATCH))))
