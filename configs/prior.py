"""Gated PixelCNN prior on the codes of a trained VQ-VAE (pytorch-vqvae's defaults).

    python train_prior.py --model runs/fmnist --output-folder runs/fmnist-prior

K, the code grid, the data set and its class names come from the VQ-VAE folder.

Variants:
  :cpu   the 2-core CPU budget (CPU_* below: CPU_MAX_STEPS steps at batch 128, cosine
         lr after a warm-up), with a `configs/<dataset>.py:cpu` VQ-VAE:
             python train_prior.py --config configs/prior.py:cpu --model runs/fmnist-cpu \
                 --output-folder runs/fmnist-cpu-prior
         Measured on the fashion_mnist.py:cpu VQ-VAE (2-core AMD EPYC, quiet,
         2026-12-04, benchmarks/results/cpu-budget/): 2400 steps in 12.6 min, test
         NLL 3.63 bits/code against a unigram entropy of 8.10, class consistency 87.0%
         (classifier: 89.2% on real test images). CPU_LR by benchmarks/prior_search.py
         (same codes, 2400 steps): lr 1e-3 3.82 bits/code, 2e-3 3.69, 4e-3 3.63 (higher
         not tried). pretrained/fashion-mnist-prior is the 4e-3 run. Atari
         (:cpu_atari) keeps CPU_ATARI_STEPS and CPU_ATARI_LR (not screened).
  :cpu_atari  :cpu for Atari Boxing's 21x21 grids (9x the cost of a 7x7 grid a step):
         CPU_ATARI_STEPS steps at batch CPU_ATARI_BATCH and lr CPU_ATARI_LR
         (pretrained/atari-boxing-prior).
  :tiny  a seconds-long CPU variant for tests.
"""
import ml_collections

CPU_MAX_STEPS = 2400  # the 60-min two-stage budget (pretrained/fashion-mnist-prior too)
CPU_LR = 4e-3  # benchmarks/prior_search.py, Fashion-MNIST codes
CPU_WARMUP_STEPS = 100
CPU_FINAL_LR_FRACTION = 0.05
CPU_ATARI_STEPS = 600
CPU_ATARI_BATCH = 32
CPU_ATARI_LR = 1e-3  # the :cpu lr before the prior screen; not screened on Atari codes


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ''               # the VQ-VAE output folder (required)
  c.data_folder = ''         # '' = the VQ-VAE run's data folder
  c.hidden_size_prior = 64
  c.num_layers = 15
  c.batch_size = 128
  c.eval_batch_size = 256
  c.num_epochs = 100
  c.lr = 3e-4
  # Optimiser (vqvae_jax.optim): Adam at a constant lr unless set otherwise.
  c.lr_schedule = 'constant'  # 'constant' | 'cosine' | 'linear'
  c.warmup_steps = 0
  c.final_lr_fraction = 0.0
  c.grad_clip = 0.0
  c.weight_decay = 0.0
  c.max_steps = 0
  c.log_every = 50
  c.ckpt_every = 500
  c.keep_checkpoints = 3
  c.samples_per_class = 8    # columns of the per-epoch sample grid
  c.temperature = 1.0
  c.device = ''
  c.precision = 'float32'
  c.progress = True
  if arg == 'tiny':
    c.hidden_size_prior = 8
    c.num_layers = 3
    c.batch_size = 8
    c.eval_batch_size = 16
    c.num_epochs = 2
    c.log_every = 2
    c.ckpt_every = 4
    c.samples_per_class = 2
    c.progress = False
  elif arg in ('cpu', 'cpu_atari'):
    c.max_steps = CPU_MAX_STEPS if arg == 'cpu' else CPU_ATARI_STEPS
    c.batch_size = c.batch_size if arg == 'cpu' else CPU_ATARI_BATCH
    c.lr = CPU_LR if arg == 'cpu' else CPU_ATARI_LR
    c.lr_schedule = 'cosine'
    c.warmup_steps = CPU_WARMUP_STEPS
    c.final_lr_fraction = CPU_FINAL_LR_FRACTION
  elif arg:
    raise ValueError(f'unknown variant {arg!r} (known: cpu, cpu_atari, tiny)')
  return c.lock()
