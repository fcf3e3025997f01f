"""Defaults shared by every data set's config, and the `:paper` / `:cpu` / `:tiny` variants.

The default recipe is pytorch-vqvae's architecture and optimiser (hidden 256,
K 512, beta 1, Adam 2e-4, batch 128) with codebook health on: EMA codebook,
restart of codes unused for 20 steps, codebook seeded from encoder outputs.
`paper(c)` is pytorch-vqvae's recipe exactly; `cpu(c)` a step-budgeted recipe
for a small CPU; `tiny(c)` a seconds-long one for tests.
"""
import ml_collections

# The `:cpu` recipe (hidden 128 costs ~4x fewer FLOPs than 256), tuned on Fashion-MNIST
# by benchmarks/recipe_search.py (benchmarks/README.md: batch, then lr / schedule / beta /
# EMA decay / restarts / init / clipping / weight decay screens, 8000-step confirmation);
# each config's docstring states what was measured with it.
CPU_HIDDEN = 128
CPU_BATCH = 32  # screened: benchmarks/results/recipes.jsonl
CPU_MAX_STEPS = 8000  # the 60-min two-stage budget (with the prior: 19.6 min, 2-core EPYC)
CPU_LR = 1e-3
CPU_BETA = 0.1        # with CPU_LR and CPU_EMA_DECAY: 25.32 dB at 8000 steps against 24.16
CPU_EMA_DECAY = 0.95  # for lr 7e-4, beta 1, EMA 0.99 (the same AMD EPYC, 2026-12-04)
CPU_SCHEDULE = 'cosine'
CPU_WARMUP_STEPS = 300
CPU_FINAL_LR_FRACTION = 0.05


def vqvae_config(*, dataset, image_size, channels, num_epochs=100):
  """The VQ-VAE stage (train_vqvae.py)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dataset = dataset
  c.data_folder = ''          # '' searches the data set's default locations
  c.image_size = image_size
  c.channels = channels
  # Model (pytorch-vqvae: hidden 256, K 512).
  c.hidden_size = 256
  c.k = 512
  # Loss and optimiser: beta multiplies the commitment term (eq. 3); pytorch-vqvae
  # found 0.25 unstable on its setup and used 1.0.
  c.beta = 1.0
  c.lr = 2e-4
  # Optimiser (vqvae_jax.optim): Adam at a constant lr unless set otherwise.
  c.lr_schedule = 'constant'  # 'constant' | 'cosine' | 'linear' (decay over the run's steps)
  c.warmup_steps = 0          # linear warm-up from 0 to lr
  c.final_lr_fraction = 0.0   # cosine / linear: lr * this at the last step
  c.grad_clip = 0.0           # > 0: clip gradients to this global norm
  c.weight_decay = 0.0        # > 0: AdamW, on kernels only
  # Codebook (defaults: codebook health on; `paper` restores the paper's loss,
  # U(-1/K, 1/K) init and no restarts).
  c.codebook = 'ema'          # 'loss': ||sg[z_e] - e||^2 (eq. 3); 'ema': EMA updates (app. A.1)
  c.ema_decay = 0.99          # EMA: gamma
  c.ema_epsilon = 1e-5        # EMA: Laplace smoothing of the counts
  c.restart_after = 20        # > 0: re-initialise a code unused for this many steps
  c.codebook_init = 'data'    # 'uniform' | 'data' (encoder outputs) | 'kmeans'
  c.codebook_init_batches = 4  # first training batches used by 'data' / 'kmeans'
  c.kmeans_iters = 10
  c.batch_size = 128          # global, split over the local devices
  c.eval_batch_size = 256
  c.num_epochs = num_epochs
  c.max_steps = 0             # > 0: stop after this many steps in total
  # Bookkeeping.
  c.log_every = 50            # steps between metric fetches
  c.ckpt_every = 500          # steps between mid-epoch checkpoints (+ each epoch end)
  c.keep_checkpoints = 3      # latest N are kept, plus the best on validation
  c.num_recon = 32            # test images in the per-epoch reconstruction grid
  c.device = ''               # '' = whatever JAX picks; cpu | gpu | cuda | tpu to insist
  c.precision = 'float32'
  c.progress = True
  return c


def tiny(c):
  """Shrinks a config for tests and CPU smoke runs (seconds, not hours)."""
  c.hidden_size = 16
  c.k = 16
  c.batch_size = 8
  c.eval_batch_size = 16
  c.num_epochs = 2
  c.log_every = 2
  c.ckpt_every = 4
  c.num_recon = 8
  c.progress = False
  return c


def paper(c):
  """pytorch-vqvae's recipe exactly: the codebook loss (eq. 3), U(-1/K, 1/K) init,
  no restarts, beta 1, Adam 2e-4 at a constant rate, hidden 256, K 512, batch 128."""
  c.hidden_size = 256
  c.k = 512
  c.beta = 1.0
  c.lr = 2e-4
  c.lr_schedule = 'constant'
  c.warmup_steps = 0
  c.final_lr_fraction = 0.0
  c.grad_clip = 0.0
  c.weight_decay = 0.0
  c.codebook = 'loss'
  c.restart_after = 0
  c.codebook_init = 'uniform'
  c.batch_size = 128
  return c


def cpu(c, *, max_steps=CPU_MAX_STEPS, batch_size=CPU_BATCH, lr=CPU_LR, beta=CPU_BETA,
        ema_decay=CPU_EMA_DECAY):
  """A step budget for a small CPU: hidden CPU_HIDDEN, `max_steps` updates with a
  cosine schedule after a linear warm-up, a lighter commitment term and a faster
  EMA codebook than the default (codebook health as in the default)."""
  c.hidden_size = CPU_HIDDEN
  c.batch_size = batch_size
  c.max_steps = max_steps
  c.lr = lr
  c.beta = beta
  c.ema_decay = ema_decay
  c.lr_schedule = CPU_SCHEDULE
  c.warmup_steps = CPU_WARMUP_STEPS
  c.final_lr_fraction = CPU_FINAL_LR_FRACTION
  return c


def variant(c, arg, extra=()):
  """Applies the variant `arg` ('tiny', 'paper', 'cpu' or None) to `c` and locks it.

  extra: (name, function) pairs of a data set's own variants.
  """
  known = dict((('tiny', tiny), ('paper', paper), ('cpu', cpu)) + tuple(extra))
  if arg and arg not in known:
    raise ValueError(f'unknown variant {arg!r} (known: {", ".join(sorted(known))})')
  if arg:
    known[arg](c)
  return c.lock()
