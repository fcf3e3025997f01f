"""VQ-VAE on Mini-ImageNet (84x84 RGB, 21x21 codes; `:128` as in the seed).

    python train_vqvae.py --dataset miniimagenet --data-folder ~/data/miniimagenet --output-folder runs/mini
    python train_vqvae.py --config configs/miniimagenet.py:128 --data-folder ~/data/miniimagenet --output-folder runs/mini128

Data: <folder>/images/ plus train.csv, val.csv, test.csv (filename,label), the
layout of Ravi & Larochelle's split. Images are resized and centre-cropped to
image_size; with `augment` the training batches get a random resized crop
(`vqvae_jax.data.random_resized_crop`), evaluation never does. Variants:
`:128`, `:paper` and `:cpu` (see configs/common.py; metrics: to be measured),
`:tiny` for tests.
"""
from configs import common


def _128(c):
  c.image_size = 128


def _tiny(c):
  common.tiny(c)
  c.image_size = 32


def get_config(arg=None):
  c = common.vqvae_config(dataset='miniimagenet', image_size=84, channels=3)
  c.augment = True  # random resized crop + flip on training batches only
  c.skip_corrupt = False  # True: skip unreadable images (counted in a warning)
  return common.variant(c, arg, (('128', _128), ('tiny', _tiny)))
