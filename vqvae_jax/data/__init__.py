"""Data sets for VQ-VAE: one `load(...)` entry point plus batch iterators.

    ds = data.load('fashion-mnist', 'train', data_folder=None)
    ds.images  # [N, H, W, C] uint8;  ds.labels  # [N] int32;  ds.class_names

Sources are tried in order: raw files in `data_folder`, then
`/usr/share/datasets/<name>/`, then (MNIST-likes, CIFAR-10) a prepared
tensorflow-datasets copy. See the README's data table for where files come from.
"""
from __future__ import annotations

import os

import numpy as np

from vqvae_jax.data import idx
from vqvae_jax.data.batching import (epoch_permutation, eval_batches,
                                     num_eval_batches, prefetch_to_device,
                                     shard, steps_per_epoch, train_batches)
from vqvae_jax.data.dataset import SPLITS, Dataset, check_split, holdout
from vqvae_jax.data.images import random_resized_crop, resize_all
from vqvae_jax.errors import UserError

NAMES = ('mnist', 'fashion-mnist', 'cifar10', 'miniimagenet', 'atari-boxing',
         'folder')
SYSTEM_DIR = '/usr/share/datasets'

__all__ = [
    'NAMES', 'SPLITS', 'Dataset', 'load', 'train_batches', 'eval_batches',
    'steps_per_epoch', 'num_eval_batches', 'epoch_permutation', 'shard',
    'prefetch_to_device', 'random_resized_crop',
]


def canonical_name(name: str) -> str:
  """'Fashion_MNIST' -> 'fashion-mnist'; raises UserError if unknown."""
  key = name.strip().lower().replace('_', '-')
  key = {'cifar-10': 'cifar10', 'mini-imagenet': 'miniimagenet'}.get(key, key)
  if key not in NAMES:
    raise UserError(f'unknown data set {name!r}; expected one of {", ".join(NAMES)}')
  return key


def load(name: str, split: str, data_folder: str | None = None, *,
         image_size: int | None = None, seed: int = 0) -> Dataset:
  """Loads one split of a data set as uint8 arrays.

  Args:
    name: one of `NAMES` ('_' and '-' are interchangeable).
    split: 'train', 'valid' or 'test'. Where the source has no validation
      split, `valid` is the last min(5000, N // 10) examples of the training
      file and `train` the rest; `test` is the official test set.
    data_folder: where the raw files are (see the README); optional for
      data sets that are found elsewhere.
    image_size: resize (shorter side, bicubic) and centre-crop to
      image_size x image_size; None keeps the native size.
    seed: only used by 'atari-boxing' (which frames are generated).

  Returns:
    A `Dataset` with images [N, H, W, C] uint8 and labels [N] int32.

  Raises:
    UserError: unknown name/split, missing or corrupt files.
  """
  name, split = canonical_name(name), check_split(split)
  if name in idx.CLASS_NAMES:
    images, labels, class_names = _mnist_like(name, split, data_folder)
  else:
    raise UserError(f'data set {name!r} is not available yet')
  images = resize_all(images, image_size)
  return Dataset(images, labels, class_names, name, split)


def _mnist_like(name: str, split: str, data_folder: str | None):
  folders = [data_folder, os.path.join(SYSTEM_DIR, name)]
  for folder in folders:
    files = idx.find(folder)
    if files:
      images, labels = idx.read_split(files, 'test' if split == 'test' else 'train')
      if split != 'test':
        images, labels = holdout(images, labels, split)
      return images, labels, idx.CLASS_NAMES[name]
  tried = ', '.join(f for f in folders if f)
  apt = ' or `apt install dataset-fashion-mnist`' if name == 'fashion-mnist' else ''
  raise UserError(
      f'{name}: no IDX files found (looked in {tried}). Expected '
      f'{", ".join(idx.expected_files())} (gzipped or not) in --data-folder; '
      f'download them from {idx.URLS[name]}{apt}')
