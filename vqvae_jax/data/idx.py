"""MNIST and Fashion-MNIST from the four IDX files (gzipped or raw).

IDX (http://yann.lecun.com/exdb/mnist/): a 4-byte magic `00 00 <type> <ndim>`,
then `ndim` big-endian int32 sizes, then the data in C order. Both data sets
use type 0x08 (uint8): images are [N, 28, 28], labels [N].
"""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from vqvae_jax.errors import UserError

# Split -> (images stem, labels stem); each stem may end in '.gz'.
STEMS = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}
CLASS_NAMES = {
    'mnist': tuple(str(d) for d in range(10)),
    'fashion-mnist': ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                      'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'),
}
URLS = {
    'mnist': 'https://ossci-datasets.s3.amazonaws.com/mnist/',
    'fashion-mnist': 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',
}
_UBYTE = 0x08


def expected_files() -> list[str]:
  return [stem + '.gz' for pair in STEMS.values() for stem in pair]


def _candidates(stem: str) -> list[str]:
  # Some mirrors (e.g. Kaggle) spell 'train-images.idx3-ubyte'.
  dotted = stem.replace('-idx', '.idx')
  return [stem, stem + '.gz', dotted, dotted + '.gz']


def find(folder: str | None) -> dict[str, str] | None:
  """Paths of the four IDX files in `folder`, or None when none are there.

  Raises:
    UserError: some but not all of the four files are present.
  """
  if not folder or not os.path.isdir(folder):
    return None
  found, missing = {}, []
  for pair in STEMS.values():
    for stem in pair:
      paths = [os.path.join(folder, c) for c in _candidates(stem)]
      hit = next((p for p in paths if os.path.isfile(p)), None)
      if hit:
        found[stem] = hit
      else:
        missing.append(stem + '[.gz]')
  if not found:
    return None
  if missing:
    raise UserError(f'{folder} holds only part of the IDX files; missing: '
                    f'{", ".join(missing)}')
  return found


def _read_bytes(path: str) -> bytes:
  try:
    if path.endswith('.gz'):
      with gzip.open(path, 'rb') as f:
        return f.read()
    with open(path, 'rb') as f:
      return f.read()
  except (OSError, EOFError, zlib.error) as e:
    raise UserError(f'cannot read {path}: corrupt or truncated ({e})') from e


def read_idx(path: str, ndim: int) -> np.ndarray:
  """Reads one uint8 IDX file.

  Args:
    path: a raw or '.gz' IDX file.
    ndim: the expected number of dimensions (3 for images, 1 for labels).

  Returns:
    uint8 array of the stored shape, e.g. [60000, 28, 28].

  Raises:
    UserError: naming `path` when the header is wrong or the data truncated.
  """
  raw = _read_bytes(path)
  header = 4 + 4 * ndim
  if len(raw) < header or raw[:2] != b'\0\0':
    raise UserError(f'{path} is not an IDX file (bad magic number)')
  if raw[2] != _UBYTE or raw[3] != ndim:
    raise UserError(f'{path}: expected uint8 IDX with {ndim} dims, header says '
                    f'type 0x{raw[2]:02x} with {raw[3]} dims')
  shape = tuple(int(s) for s in np.frombuffer(raw, '>i4', ndim, offset=4))
  size = int(np.prod(shape))
  if len(raw) - header != size:
    raise UserError(f'{path} is truncated or corrupt: header shape {shape} needs '
                    f'{size} bytes of data, file has {len(raw) - header}')
  return np.frombuffer(raw, np.uint8, size, offset=header).reshape(shape)


def read_split(files: dict[str, str], split: str):
  """Reads 'train' or 'test' of a `find` result.

  Returns:
    images [N, 28, 28, 1] uint8 and labels [N] int32.
  """
  image_stem, label_stem = STEMS[split]
  images = read_idx(files[image_stem], 3)
  labels = read_idx(files[label_stem], 1)
  if len(images) != len(labels):
    raise UserError(f'{files[image_stem]} has {len(images)} images but '
                    f'{files[label_stem]} has {len(labels)} labels')
  if labels.size and labels.max() > 9:
    raise UserError(f'{files[label_stem]}: label {labels.max()} outside 0..9')
  return images[..., None], labels.astype(np.int32)
