"""Atomic writes: a file is replaced only by complete new content, one at a time or many."""
import os

import pytest

from vqvae_jax import fileio
from vqvae_jax.errors import UserError


def _leftovers(folder):
  return [n for n in os.listdir(folder) if n.startswith('.')]


def test_atomic_write_many_writes_every_file_and_reports_each_failure(tmp_path, monkeypatch):
  monkeypatch.setattr(fileio, 'OPEN_AT_ONCE', 3)  # several groups of open files
  (tmp_path / 'blocker').write_text('a file, not a folder')
  items = [(str(tmp_path / f'{i}.bin'), bytes([i]) * (i + 1)) for i in range(8)]
  items.insert(4, (str(tmp_path / 'blocker' / 'x.bin'), b'cannot be written'))
  errors = fileio.atomic_write_many(items)
  assert [e is None for e in errors] == [True] * 4 + [False] + [True] * 4
  assert isinstance(errors[4], UserError) and 'blocker' in str(errors[4])
  for i in range(8):
    assert (tmp_path / f'{i}.bin').read_bytes() == bytes([i]) * (i + 1)
  assert not _leftovers(tmp_path)


def test_a_failed_fsync_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
  old = tmp_path / 'kept.bin'
  old.write_bytes(b'old content')
  real_fsync, calls = os.fsync, []

  def flaky_fsync(fd):
    calls.append(fd)
    if len(calls) == 1:
      raise OSError(5, 'Input/output error')
    real_fsync(fd)

  monkeypatch.setattr(fileio, 'FSYNC_THREADS', 1)  # the first fsync is the first file's
  monkeypatch.setattr(os, 'fsync', flaky_fsync)
  errors = fileio.atomic_write_many([(str(old), b'new'), (str(tmp_path / 'new.bin'), b'n')])
  assert isinstance(errors[0], UserError) and errors[1] is None
  assert old.read_bytes() == b'old content'
  assert (tmp_path / 'new.bin').read_bytes() == b'n'
  assert not _leftovers(tmp_path)


@pytest.mark.parametrize('umask', [0o022, 0o077])
def test_atomic_write_many_honours_the_umask(tmp_path, umask):
  previous = os.umask(umask)
  try:
    assert fileio.atomic_write_many([(str(tmp_path / 'f'), b'x')]) == [None]
  finally:
    os.umask(previous)
  assert (tmp_path / 'f').stat().st_mode & 0o777 == 0o666 & ~umask
