"""CIFAR-10 from the `cifar-10-batches-py` pickle batches, unpickled safely.

Each batch is a pickled dict {b'data': [10000, 3072] uint8 (1024 red, 1024
green, 1024 blue values, each plane row-major 32x32), b'labels': [10000] ints,
...}. The files come from the internet, so they are read with an unpickler
that can build only dicts, lists, strings, numbers and plain numpy arrays: a
pickle that asks for any other callable (os.system, eval, ...) is refused.
"""
from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np

from vqvae_jax.errors import UserError

TRAIN_FILES = tuple(f'data_batch_{i}' for i in range(1, 6))
TEST_FILES = ('test_batch',)
META_FILE = 'batches.meta'
SUBDIR = 'cifar-10-batches-py'
ARCHIVE = 'cifar-10-python.tar.gz'
URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
CLASS_NAMES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
               'horse', 'ship', 'truck')  # already sorted


def _numpy_globals():
  core = getattr(np, '_core', None) or np.core
  import codecs  # pylint: disable=g-import-not-at-top
  reconstruct = core.multiarray._reconstruct  # pylint: disable=protected-access
  return {
      ('numpy.core.multiarray', '_reconstruct'): reconstruct,
      ('numpy._core.multiarray', '_reconstruct'): reconstruct,
      ('numpy', 'ndarray'): np.ndarray,
      ('numpy', 'dtype'): np.dtype,
      ('_codecs', 'encode'): codecs.encode,  # bytes in Python 3 protocol-2 pickles
  }


class _SafeUnpickler(pickle.Unpickler):
  """Resolves only the globals a numpy-array-in-a-dict pickle needs."""

  def __init__(self, file, name):
    super().__init__(file, encoding='bytes')
    self._name = name
    self._allowed = _numpy_globals()

  def find_class(self, module, name):
    if (module, name) not in self._allowed:
      raise UserError(f'{self._name}: refusing to load, the pickle asks for '
                      f'{module}.{name}, which a CIFAR-10 batch never contains '
                      f'(the file may be malicious; get it from {URL})')
    return self._allowed[(module, name)]


def safe_load(data: bytes, name: str):
  """Unpickles `data` (from file `name`) with the restricted unpickler."""
  try:
    return _SafeUnpickler(io.BytesIO(data), name).load()
  except UserError:
    raise
  except Exception as e:  # pickle raises many types on corrupt input
    raise UserError(f'{name} is corrupt or truncated ({type(e).__name__}: {e})') from e


def _key(d, key):
  return d.get(key.encode(), d.get(key)) if isinstance(d, dict) else None


def parse_batch(data: bytes, name: str):
  """One batch file's bytes -> images [n, 32, 32, 3] uint8, labels [n] int32."""
  d = safe_load(data, name)
  pixels, labels = _key(d, 'data'), _key(d, 'labels')
  if (not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8
      or pixels.ndim != 2 or pixels.shape[1] != 3072 or labels is None
      or len(labels) != len(pixels)):
    raise UserError(f'{name} is not a CIFAR-10 batch (expected data [n, 3072] '
                    f'uint8 and n labels)')
  labels = np.asarray(labels, np.int64)
  if labels.size and (labels.min() < 0 or labels.max() > 9):
    raise UserError(f'{name}: labels outside 0..9')
  images = pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), labels.astype(np.int32)


def find(folder: str | None) -> list[str] | None:
  """The source files (batch folder or archive) under `folder`, or None."""
  if not folder or not os.path.isdir(folder):
    return None
  for sub in (folder, os.path.join(folder, SUBDIR)):
    present = [f for f in TRAIN_FILES + TEST_FILES if os.path.isfile(os.path.join(sub, f))]
    if present:
      missing = sorted(set(TRAIN_FILES + TEST_FILES) - set(present))
      if missing:
        raise UserError(f'{sub} holds only part of CIFAR-10; missing: {", ".join(missing)}')
      return [os.path.join(sub, f) for f in TRAIN_FILES + TEST_FILES]
  archive = os.path.join(folder, ARCHIVE)
  return [archive] if os.path.isfile(archive) else None


def _read_members(files: list[str], wanted: tuple[str, ...]):
  if len(files) > 1:
    for name in wanted:
      path = next(f for f in files if os.path.basename(f) == name)
      with open(path, 'rb') as fh:
        yield path, fh.read()
    return
  try:
    with tarfile.open(files[0], 'r:gz') as tar:
      for name in wanted:
        member = f'{SUBDIR}/{name}'
        yield f'{files[0]}:{member}', tar.extractfile(member).read()
  except (tarfile.TarError, KeyError, OSError, EOFError) as e:
    raise UserError(f'{files[0]} is corrupt or incomplete ({e})') from e


def read_split(files: list[str], split: str):
  """'train' (all 50,000, file order) or 'test' -> images [N,32,32,3], labels [N]."""
  wanted = TEST_FILES if split == 'test' else TRAIN_FILES
  parts = [parse_batch(data, name) for name, data in _read_members(files, wanted)]
  return (np.concatenate([p[0] for p in parts]),
          np.concatenate([p[1] for p in parts]))
