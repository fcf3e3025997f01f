"""Writers for data set fixtures in the real on-disk formats (used by tests)."""
from __future__ import annotations

import gzip
import os

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
  """uint8 array -> IDX bytes: magic 00 00 08 <ndim>, big-endian sizes, data."""
  array = np.ascontiguousarray(array, np.uint8)
  header = bytes([0, 0, 0x08, array.ndim])
  header += np.asarray(array.shape, '>i4').tobytes()
  return header + array.tobytes()


def write_idx(path: str, array: np.ndarray) -> str:
  """Writes `array` as IDX; gzipped when `path` ends in '.gz'."""
  data = idx_bytes(array)
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'wb') as f:
    f.write(data)
  return path


def random_mnist(rng: np.random.Generator, n: int, size: int = 28):
  """images [n, size, size] uint8, labels [n] uint8 in 0..9."""
  images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
  labels = rng.integers(0, 10, n, dtype=np.uint8)
  return images, labels


def write_mnist_folder(folder: str, *, n_train: int = 120, n_test: int = 30,
                       gz: bool = True, seed: int = 0) -> dict:
  """Writes the four IDX files; returns {'train': (x, y), 'test': (x, y)}."""
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  ext = '.gz' if gz else ''
  out = {}
  for split, prefix, n in (('train', 'train', n_train), ('test', 't10k', n_test)):
    images, labels = random_mnist(rng, n)
    write_idx(os.path.join(folder, f'{prefix}-images-idx3-ubyte{ext}'), images)
    write_idx(os.path.join(folder, f'{prefix}-labels-idx1-ubyte{ext}'), labels)
    out[split] = (images, labels)
  return out
