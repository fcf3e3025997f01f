"""VQ-VAE on any image folder with one sub-folder per class (64x64 RGB, 16x16 codes).

    python train_vqvae.py --dataset folder --data-folder ~/pictures --output-folder runs/folder

Data: <folder>/<class>/<image> (split 80/10/10 by a hash of each file name) or
<folder>/{train,valid|val,test}/<class>/<image>. Class ids follow sorted folder
names. Set `skip_corrupt` to skip unreadable images (they are counted) instead
of failing; `channels` 1 converts to grey. Variants (see configs/common.py):
`:paper`, `:cpu` (metrics: to be measured), `:tiny` a CPU variant for tests.
"""
from configs import common


def _tiny(c):
  common.tiny(c)
  c.image_size = 16


def get_config(arg=None):
  c = common.vqvae_config(dataset='folder', image_size=64, channels=3)
  c.skip_corrupt = False
  return common.variant(c, arg, (('tiny', _tiny),))
