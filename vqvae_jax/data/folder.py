"""Any image folder with one sub-folder per class (`--dataset folder`).

    <folder>/<class>/<any/depth>/<image>          split by file name hash, or
    <folder>/{train,valid|val,test}/<class>/...   explicit splits

Class ids follow the sorted class folder names (the union over all splits).
Without explicit split folders each file goes to test (10%), valid (10%) or
train (80%) by a hash of its path relative to its class folder, so adding
files never moves existing ones between splits.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np

from vqvae_jax.data import cache, images
from vqvae_jax.errors import UserError

EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp', '.tif', '.tiff',
              '.ppm', '.pgm')
_SPLIT_DIRS = {'train': ('train',), 'valid': ('valid', 'val'), 'test': ('test',)}
_SPLIT_ID = {'train': 0, 'valid': 1, 'test': 2}


def _images_under(folder: str) -> list[str]:
  found = []
  for dirpath, dirnames, filenames in os.walk(folder):
    dirnames.sort()
    found += [os.path.join(dirpath, f) for f in sorted(filenames)
              if f.lower().endswith(EXTENSIONS) and not f.startswith('.')]
  return found


def _classes(folder: str) -> list[str]:
  return sorted(d for d in os.listdir(folder)
                if os.path.isdir(os.path.join(folder, d)) and not d.startswith('.'))


def hash_split(relative_path: str) -> int:
  """0 (train, 80%), 1 (valid, 10%) or 2 (test, 10%), a function of the path."""
  bucket = int(hashlib.sha1(relative_path.encode()).hexdigest()[:8], 16) % 10
  return 2 if bucket == 0 else 1 if bucket == 1 else 0


def _index(folder: str):
  """All (path, class name, split id) triples under `folder`."""
  subdirs = _classes(folder)
  explicit = 'train' in subdirs and set(subdirs) <= {'train', 'valid', 'val', 'test'}
  entries = []
  for split, names in _SPLIT_DIRS.items():
    for name in names if explicit else ():
      for cls in _classes(os.path.join(folder, name)) if name in subdirs else ():
        entries += [(p, cls, _SPLIT_ID[split])
                    for p in _images_under(os.path.join(folder, name, cls))]
  for cls in () if explicit else subdirs:
    root = os.path.join(folder, cls)
    entries += [(p, cls, hash_split(os.path.relpath(p, root)))
                for p in _images_under(root)]
  return entries


def load(split: str, folder: str | None, *, image_size: int | None = None,
         channels: int | None = None, skip_corrupt: bool = False):
  """Returns images [N, S, S, C] uint8, labels [N] int32, class names."""
  if not folder or not os.path.isdir(folder):
    raise UserError(f'--dataset folder needs --data-folder pointing at a folder '
                    f'with one sub-folder of images per class (got {folder!r})')
  entries = _index(folder)
  if not entries:
    raise UserError(f'no images ({", ".join(EXTENSIONS)}) found in class '
                    f'sub-folders of {folder}; expected <folder>/<class>/<image>')
  class_names = tuple(sorted({cls for _, cls, _ in entries}))
  ids = {name: i for i, name in enumerate(class_names)}
  entries.sort(key=lambda e: e[2])  # each split contiguous: slices stay memory-mapped
  paths = [p for p, _, _ in entries]

  def build():
    x, kept = images.decode_many(paths, image_size, channels,
                                 skip_corrupt=skip_corrupt, desc='image folder')
    labels = np.array([ids[entries[i][1]] for i in kept], np.int32)
    splits = np.array([entries[i][2] for i in kept], np.uint8)
    return {'images': x, 'labels': labels, 'splits': splits}, {}

  key = cache.fingerprint(paths, size=image_size, channels=channels, skip=skip_corrupt)
  arrays, _ = cache.cached('folder', key, build)
  lo, hi = np.searchsorted(arrays['splits'], [_SPLIT_ID[split], _SPLIT_ID[split] + 1])
  if lo == hi:
    raise UserError(f'{folder} has no images in the {split} split')
  return arrays['images'][lo:hi], arrays['labels'][lo:hi], class_names
