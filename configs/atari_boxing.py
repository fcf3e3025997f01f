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
or `bash benchmarks/run_results.sh atari-boxing`. Measured (2-core Intel Xeon with
AMX, no accelerator, quiet, 2026-12-03; benchmarks/results/cpu-recipes/atari-boxing.*.json):
VQ-VAE 20.7 min + prior 20.3 min = 40.9 min; test PSNR 32.73 dB, SSIM 0.959, 512/512
codes used; the prior codes the test grids at 0.270 bits per code against a unigram
entropy of 8.16; unconditional samples in benchmarks/results/cpu-recipes/atari-boxing-samples.png.
`:tiny` a seconds-long CPU variant.
"""
from configs import common

CPU_MAX_STEPS = 800
CPU_BATCH = 64
# Not screened on Atari frames: the values of pretrained/atari-boxing, from before the
# Fashion-MNIST screen moved :cpu to lr 1e-3, beta 0.1, EMA decay 0.95.
CPU_LR, CPU_BETA, CPU_EMA_DECAY = 7e-4, 1.0, 0.99


def _tiny(c):
  common.tiny(c)
  c.image_size = 32
  c.num_frames = 200


def get_config(arg=None):
  c = common.vqvae_config(dataset='atari-boxing', image_size=84, channels=3)
  c.num_frames = 60000
  return common.variant(c, arg, (
      ('tiny', _tiny),
      ('cpu', lambda c: common.cpu(c, max_steps=CPU_MAX_STEPS, batch_size=CPU_BATCH,
                                   lr=CPU_LR, beta=CPU_BETA, ema_decay=CPU_EMA_DECAY))))
