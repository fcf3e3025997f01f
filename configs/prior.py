"""Gated PixelCNN prior on the codes of a trained VQ-VAE (pytorch-vqvae's defaults).

    python train_prior.py --model runs/fmnist --output-folder runs/fmnist-prior

K, the code grid, the data set and its class names come from the VQ-VAE folder.
`:tiny` is a seconds-long CPU variant.
"""
import ml_collections


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
  elif arg:
    raise ValueError(f'unknown variant {arg!r} (known: tiny)')
  return c.lock()
