"""VQ-VAE on Atari 2600 Boxing frames (84x84 RGB, 21x21 codes).

    python train_vqvae.py --dataset atari-boxing --output-folder runs/boxing

Data: generated on the first run with gymnasium + ale-py (their wheels ship the
ROM) under a random policy: `num_frames` frames, deterministic for `seed`,
resumable, stored in --data-folder (default ~/.cache/vqvae-jax/atari-boxing/).
Splits are 80/10/10 in time order. `:tiny` is a seconds-long CPU variant.
"""
from configs import common


def get_config(arg=None):
  c = common.vqvae_config(dataset='atari-boxing', image_size=84, channels=3)
  c.num_frames = 60000
  if arg == 'tiny':
    common.tiny(c)
    c.image_size = 32
    c.num_frames = 200
  elif arg:
    raise ValueError(f'unknown variant {arg!r} (known: tiny)')
  return c.lock()
