"""Atomic file writes: a file is replaced only once its new content is complete."""
from __future__ import annotations

import json
import os
import secrets

from vqvae_jax.errors import UserError


def _create_temp(folder: str, base: str) -> tuple[int, str]:
  """A new empty file '.<base>.<random>' in `folder` -> (fd, path), created with
  mode 0666 less the umask (like any new file; mkstemp would give 0600)."""
  while True:
    tmp = os.path.join(folder, f'.{base}.{secrets.token_hex(6)}')
    try:
      return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
    except FileExistsError:
      continue


def atomic_write(path: str, data: bytes | str) -> None:
  """Writes `data` to a temporary file beside `path`, fsyncs, then renames; the
  file's mode honours the umask."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  mode = 'wb' if isinstance(data, bytes) else 'w'
  fd, tmp = _create_temp(folder, os.path.basename(path))
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
