"""Mini-ImageNet (Vinyals et al. 2016; Ravi & Larochelle's split) from CSVs.

Layout (as the seed project used it):

    <folder>/images/n0153282900000005.jpg ...
    <folder>/train.csv   filename,label   (38,400 images, 64 classes)
    <folder>/val.csv                      ( 9,600 images, 16 classes)
    <folder>/test.csv                     (12,000 images, 20 classes)

Our 'valid' split reads val.csv. The three CSVs have disjoint classes, so each
split's class ids index its own sorted label list. Images are resized (shorter
side, bicubic) and centre-cropped to `image_size` (84 by default).
"""
from __future__ import annotations

import csv
import os

import numpy as np

from vqvae_jax.data import cache, images
from vqvae_jax.errors import UserError

CSV = {'train': 'train.csv', 'valid': 'val.csv', 'test': 'test.csv'}
DEFAULT_SIZE = 84
HOWTO = ('Mini-ImageNet needs --data-folder <folder> with images/ plus '
         'train.csv, val.csv and test.csv (filename,label); create them with '
         'the split files of Ravi & Larochelle '
         '(https://github.com/twitter/meta-learning-lstm) from ImageNet')


def _rows(path: str) -> list[tuple[str, str]]:
  try:
    with open(path, newline='') as f:
      rows = [r for r in csv.reader(f) if r]
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise UserError(f'cannot read {path}: {e}') from e
  if rows and [c.strip().lower() for c in rows[0]] == ['filename', 'label']:
    rows = rows[1:]
  bad = next((i for i, r in enumerate(rows) if len(r) != 2), None)
  if bad is not None:
    raise UserError(f'{path}: row {bad + 2} is not "filename,label"')
  if not rows:
    raise UserError(f'{path} lists no images')
  return [(r[0].strip(), r[1].strip()) for r in rows]


def find(folder: str | None) -> bool:
  return bool(folder) and os.path.isfile(os.path.join(folder, 'train.csv'))


def load(split: str, folder: str, *, image_size: int | None = None,
         skip_corrupt: bool = False):
  """Returns images [N, S, S, 3] uint8, labels [N] int32, class names."""
  size = image_size or DEFAULT_SIZE
  csv_path = os.path.join(folder, CSV[split])
  image_dir = os.path.join(folder, 'images')
  missing = [p for p in (csv_path, image_dir) if not os.path.exists(p)]
  if missing:
    raise UserError(f'missing {", ".join(missing)}. {HOWTO}')
  rows = _rows(csv_path)
  paths = [os.path.join(image_dir, name) for name, _ in rows]
  absent = [p for p in paths if not os.path.isfile(p)]
  if absent:
    raise UserError(f'{len(absent)} image(s) listed in {csv_path} are missing '
                    f'from {image_dir}, e.g. {os.path.basename(absent[0])}')
  class_names = tuple(sorted({label for _, label in rows}))
  ids = {name: i for i, name in enumerate(class_names)}
  labels = np.array([ids[label] for _, label in rows], np.int32)

  def build():
    x, kept = images.decode_many(paths, size, 3, skip_corrupt=skip_corrupt,
                                 desc=f'mini-imagenet {split}')
    return {'images': x, 'labels': labels[kept]}, {}

  key = cache.fingerprint([csv_path] + paths, size=size, skip=skip_corrupt)
  arrays, _ = cache.cached(f'miniimagenet-{split}', key, build)
  return arrays['images'], arrays['labels'], class_names
