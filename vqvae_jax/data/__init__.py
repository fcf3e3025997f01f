"""Data sets for VQ-VAE: one `load(...)` entry point plus batch iterators.

    ds = data.load('fashion-mnist', 'train', data_folder=None)
    ds.images  # [N, H, W, C] uint8;  ds.labels  # [N] int32;  ds.class_names

Sources are tried in order: raw files in `data_folder`, then
`/usr/share/datasets/<name>/`, then (MNIST-likes, CIFAR-10) a prepared
tensorflow-datasets copy. Decoded arrays are cached (see `cache`).
"""
from __future__ import annotations

import os

import numpy as np

from vqvae_jax.data import atari, cache, cifar, folder, idx, miniimagenet, tfds_source
from vqvae_jax.data.batching import (epoch_permutation, eval_batches,
                                     num_eval_batches, prefetch_to_device,
                                     shard, steps_per_epoch, train_batches)
from vqvae_jax.data.dataset import SPLITS, Dataset, check_split, holdout, relabel
from vqvae_jax.data.images import augment, random_resized_crop, resize_all, to_channels
from vqvae_jax.errors import UserError

NAMES = ('mnist', 'fashion-mnist', 'cifar10', 'miniimagenet', 'atari-boxing',
         'folder')
SYSTEM_DIR = '/usr/share/datasets'

__all__ = [
    'NAMES', 'SPLITS', 'Dataset', 'load', 'train_batches', 'eval_batches',
    'steps_per_epoch', 'num_eval_batches', 'epoch_permutation', 'shard',
    'prefetch_to_device', 'random_resized_crop', 'augment', 'canonical_name', 'relabel',
]


def canonical_name(name: str) -> str:
  """'Fashion_MNIST' -> 'fashion-mnist'; raises UserError if unknown."""
  key = name.strip().lower().replace('_', '-')
  key = {'cifar-10': 'cifar10', 'mini-imagenet': 'miniimagenet'}.get(key, key)
  if key not in NAMES:
    raise UserError(f'unknown data set {name!r}; expected one of {", ".join(NAMES)}')
  return key


def load(name: str, split: str, data_folder: str | None = None, *,
         image_size: int | None = None, seed: int = 0, channels: int | None = None,
         skip_corrupt: bool = False, num_frames: int | None = None) -> Dataset:
  """Loads one split of a data set as uint8 arrays.

  Args:
    name: one of `NAMES` ('_' and '-' are interchangeable).
    split: 'train', 'valid' or 'test'. MNIST, Fashion-MNIST and CIFAR-10 hold
      out the last min(5000, N // 10) examples of the training file as
      `valid`; Mini-ImageNet reads val.csv; folders and Atari are described
      in their modules. `test` is never used for model selection.
    data_folder: where the raw files are (see the README); '' or None searches
      the default locations.
    image_size: resize (shorter side, bicubic) and centre-crop to
      image_size x image_size; None keeps the native size (84 for
      Mini-ImageNet and Atari).
    seed: only used by 'atari-boxing' (which frames are generated).
    channels: 1 or 3 to convert to; None keeps the data set's own.
    skip_corrupt: folder / Mini-ImageNet: skip unreadable images (a warning
      counts them) instead of failing.
    num_frames: 'atari-boxing' frames to generate (default 60,000).

  Returns:
    A `Dataset` with images [N, H, W, C] uint8 and labels [N] int32.

  Raises:
    UserError: unknown name/split, missing or corrupt files.
  """
  name, split = canonical_name(name), check_split(split)
  data_folder = data_folder or None
  fixed = name in ('mnist', 'fashion-mnist', 'cifar10')
  if data_folder and fixed and not os.path.isdir(data_folder):
    raise _not_found(name, f'--data-folder {data_folder} does not exist (leave '
                     'it out to search the default locations)')
  episodes = None
  if fixed:
    images, labels, class_names = _fixed_source(name, split, data_folder, image_size)
  elif name == 'miniimagenet':
    path = data_folder or os.path.join(SYSTEM_DIR, name)
    images, labels, class_names = miniimagenet.load(
        split, path, image_size=image_size, skip_corrupt=skip_corrupt)
  elif name == 'folder':
    images, labels, class_names = folder.load(
        split, data_folder, image_size=image_size, channels=channels,
        skip_corrupt=skip_corrupt)
  else:
    images, labels, class_names, episodes = atari.load(
        split, data_folder, image_size=image_size, seed=seed, num_frames=num_frames)
  images = to_channels(images, channels)
  return Dataset(images, labels, class_names, name, split, episodes)


def _fixed_source(name: str, split: str, data_folder: str | None,
                  image_size: int | None):
  """MNIST / Fashion-MNIST / CIFAR-10: data folder, system folder, then tfds."""
  fmt = cifar if name == 'cifar10' else idx
  part = 'test' if split == 'test' else 'train'
  class_names = cifar.CLASS_NAMES if name == 'cifar10' else idx.CLASS_NAMES[name]
  folders = [f for f in (data_folder, os.path.join(SYSTEM_DIR, name)) if f]
  files = next((fs for fs in map(fmt.find, folders) if fs), None)

  def build():
    if files:
      images, labels = fmt.read_split(files, part)
    else:
      got = tfds_source.read_split(name, part, _tfds_dir(data_folder, name))
      if got is None:
        raise _not_found(name, f'no data found (looked in {", ".join(folders)} '
                         'and tensorflow-datasets)')
      images, labels = got
    return {'images': resize_all(images, image_size), 'labels': labels}, {}

  if files:
    paths = sorted(files.values()) if isinstance(files, dict) else files
    key = cache.fingerprint(paths, size=image_size)
    arrays, _ = cache.cached(f'{name}-{part}', key, build)
  else:  # tfds gives no file list: key on its size and first and last examples
    probe = tfds_source.probe(name, part, _tfds_dir(data_folder, name))
    if probe is None:
      arrays, _ = build()  # raises the not-found error
    else:
      arrays, _ = cache.cached(f'{name}-{part}-tfds', cache.fingerprint([], tfds=probe,
                                                                         size=image_size), build)
  images, labels = arrays['images'], arrays['labels']
  if split != 'test':
    images, labels = holdout(images, labels, split)
  return images, labels, class_names


def _tfds_dir(data_folder: str | None, name: str) -> str | None:
  tfds_name = tfds_source.TFDS_NAMES[name]
  if data_folder and os.path.isdir(os.path.join(data_folder, tfds_name)):
    return data_folder
  return None  # tfds' default: $TFDS_DATA_DIR or ~/tensorflow_datasets


def _not_found(name: str, problem: str) -> UserError:
  if name == 'cifar10':
    return UserError(
        f'cifar10: {problem}. Expected {cifar.SUBDIR}/ with {", ".join(cifar.TRAIN_FILES)}, '
        f'{cifar.TEST_FILES[0]} (or {cifar.ARCHIVE}) in --data-folder; download '
        f'{cifar.URL}')
  apt = ' or `apt-get install dataset-fashion-mnist`' if name == 'fashion-mnist' else ''
  return UserError(
      f'{name}: {problem}. Expected {", ".join(idx.expected_files())} (gzipped or not) in '
      f'--data-folder; download them from {idx.URLS[name]}{apt}')
