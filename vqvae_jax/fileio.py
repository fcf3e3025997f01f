"""Atomic file writes: a file is replaced only once its new content is complete."""
from __future__ import annotations

import json
import os
import tempfile

from vqvae_jax.errors import UserError


def atomic_write(path: str, data: bytes | str) -> None:
  """Writes `data` to a temporary file beside `path`, fsyncs, then renames."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  mode = 'wb' if isinstance(data, bytes) else 'w'
  fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=folder)
  try:
    with os.fdopen(fd, mode) as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def make_output_folder(path: str) -> None:
  """Creates an output folder (and its parents); a clear error if it cannot."""
  try:
    os.makedirs(path, exist_ok=True)
  except (FileExistsError, NotADirectoryError):
    raise UserError(f'cannot use {path} as an output folder: it, or a folder above it, '
                    'is a file') from None
  except PermissionError:
    raise UserError(f'cannot create the output folder {path}: permission denied') from None


def write_json(path: str, obj) -> None:
  atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + '\n')


def read_jsonl(path: str) -> list[dict]:
  """Reads a JSON-lines file, ignoring a torn last line left by a crash."""
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        break
  return rows
