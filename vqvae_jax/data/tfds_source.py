"""A prepared tensorflow-datasets copy, read with `tfds.data_source` (no TensorFlow).

Preparing (downloading) a data set needs TensorFlow; it is attempted only when
TensorFlow is importable.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging

import numpy as np
import tqdm

from vqvae_jax.distributed import is_main_process
from vqvae_jax.errors import UserError

TFDS_NAMES = {'mnist': 'mnist', 'fashion-mnist': 'fashion_mnist', 'cifar10': 'cifar10'}


def _source(tfds_name: str, split: str, data_dir: str | None):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    return tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # not prepared: tfds raises assorted types
    logging.info('tfds %s not prepared in %s: %s', tfds_name, data_dir, e)
  if importlib.util.find_spec('tensorflow') is None:
    return None
  logging.warning('preparing %s with tensorflow-datasets (downloads it)', tfds_name)
  try:
    return tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=True)
  except Exception as e:  # network or TensorFlow trouble
    raise UserError(f'tensorflow-datasets could not prepare {tfds_name}: {e}') from e


def read_split(name: str, split: str, data_dir: str | None = None):
  """tfds 'train' or 'test' -> images [N, H, W, C] uint8, labels [N] int32.

  Returns None when tensorflow-datasets is missing or the data set is neither
  prepared nor preparable (no TensorFlow).
  """
  if importlib.util.find_spec('tensorflow_datasets') is None:
    return None
  source = _source(TFDS_NAMES[name], split, data_dir)
  if source is None:
    return None
  n = len(source)
  first = source[0]
  images = np.empty((n,) + first['image'].shape, np.uint8)
  labels = np.empty((n,), np.int32)
  for i in tqdm.trange(n, desc=f'tfds {name} {split}', disable=n < 2000 or not is_main_process(),
                         leave=False):
    example = first if i == 0 else source[i]
    images[i], labels[i] = example['image'], example['label']
  return images, labels


def probe(name: str, split: str, data_dir: str | None = None) -> str | None:
  """A cache key for a prepared tfds split without reading it all: its size
  and a hash of its first and last examples. None when read_split would be."""
  if importlib.util.find_spec('tensorflow_datasets') is None:
    return None
  source = _source(TFDS_NAMES[name], split, data_dir)
  if source is None or len(source) == 0:
    return None
  h = hashlib.sha256(f'{TFDS_NAMES[name]}/{split}/{len(source)}'.encode())
  for i in (0, len(source) - 1):
    example = source[i]
    h.update(np.ascontiguousarray(example['image']).tobytes())
    h.update(str(int(example['label'])).encode())
  return h.hexdigest()[:16]
