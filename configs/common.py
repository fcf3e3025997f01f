"""Defaults shared by every data set's config (pytorch-vqvae's, unless stated)."""
import ml_collections


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
  # Codebook (defaults: the paper's codebook loss, U(-1/K, 1/K) init, no restarts).
  c.codebook = 'loss'         # 'loss': ||sg[z_e] - e||^2 (eq. 3); 'ema': EMA updates (app. A.1)
  c.ema_decay = 0.99          # EMA: gamma
  c.ema_epsilon = 1e-5        # EMA: Laplace smoothing of the counts
  c.restart_after = 0         # > 0: re-initialise a code unused for this many steps
  c.codebook_init = 'uniform'  # 'uniform' | 'data' (encoder outputs) | 'kmeans'
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
