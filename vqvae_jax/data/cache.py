"""Decoded data sets cached once as uint8 .npy files, read back memory-mapped.

A cache entry is a folder `<root>/<name>-<key>/` holding one `.npy` per array
and `meta.json`; `key` hashes the source files' (path, size, mtime) and the
decoding options, so editing or replacing a source file rebuilds the entry.
`root` is $VQVAE_CACHE_DIR, else ~/.cache/vqvae-jax. Entries are written to a
temporary folder and renamed into place, so an interrupted run leaves no
half-written entry. An unwritable cache only costs speed, never an error.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from typing import Callable

import numpy as np

_VERSION = 1  # bump when a decoder's output changes


def root() -> str:
  return os.environ.get('VQVAE_CACHE_DIR') or os.path.join(
      os.path.expanduser('~'), '.cache', 'vqvae-jax')


def fingerprint(paths: list[str], **options) -> str:
  """A short hash of the files' (path, size, mtime) and `options`."""
  h = hashlib.sha256(json.dumps([_VERSION, sorted(options.items())],
                                default=str).encode())
  for path in paths:
    st = os.stat(path)
    h.update(f'{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
  return h.hexdigest()[:16]


def _read(folder: str):
  with open(os.path.join(folder, 'meta.json')) as f:
    meta = json.load(f)
  arrays = {k: np.load(os.path.join(folder, k + '.npy'), mmap_mode='r')
            for k in meta['arrays']}
  return arrays, meta['extra']


def cached(name: str, key: str,
           build: Callable[[], tuple[dict[str, np.ndarray], dict]]):
  """Returns `build()`'s (arrays, extra), from the cache when present.

  Args:
    name: a readable prefix for the entry folder, e.g. 'mnist-train'.
    key: e.g. `fingerprint(...)`; a new key means a new entry.
    build: returns ({array name: np.ndarray}, JSON-able extra info).

  Returns:
    ({array name: read-only memory-mapped np.ndarray}, extra); plain arrays
    when the cache cannot be written.
  """
  folder = os.path.join(root(), f'{name}-{key}')
  if os.path.isfile(os.path.join(folder, 'meta.json')):
    try:
      return _read(folder)
    except (OSError, ValueError, KeyError) as e:
      logging.warning('rebuilding unreadable cache %s (%s)', folder, e)
      shutil.rmtree(folder, ignore_errors=True)
  arrays, extra = build()
  try:
    os.makedirs(root(), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{name}-', dir=root())
    for k, v in arrays.items():
      np.save(os.path.join(tmp, k + '.npy'), np.ascontiguousarray(v))
    with open(os.path.join(tmp, 'meta.json'), 'w') as f:
      json.dump({'arrays': sorted(arrays), 'extra': extra}, f)
    try:
      os.rename(tmp, folder)
    except OSError:  # another process finished first
      shutil.rmtree(tmp, ignore_errors=True)
    return _read(folder)
  except OSError as e:
    logging.warning('cannot write data cache under %s (%s); set VQVAE_CACHE_DIR',
                    root(), e)
    return arrays, extra
