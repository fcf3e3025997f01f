"""Host-side runtime set-up of the entry points (vqvae_jax.cli.flags)."""
import os
import platform
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Allocates, touches and frees 200 MB three times from a worker thread (as XLA:CPU
# does with a step's scratch buffer) and prints the minor page faults of each round.
_PROBE = r'''
import ctypes, resource, threading
from vqvae_jax.cli.flags import tune_malloc
tuned = tune_malloc()
libc = ctypes.CDLL('libc.so.6')
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
n = 200 << 20
faults = []
def work():
  for _ in range(3):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(n)
    libc.memset(p, 1, n)
    libc.free(p)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
t = threading.Thread(target=work)
t.start()
t.join()
print(tuned, *faults)
'''


def _probe(**env):
  out = subprocess.run([sys.executable, '-c', _PROBE], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, check=True,
                       env={**os.environ, 'PYTHONPATH': ROOT, **env}).stdout.split()
  return out[0] == 'True', [int(v) for v in out[1:]]


@pytest.mark.skipif(platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc',
                    reason='tune_malloc only acts on glibc')
def test_tune_malloc_reuses_freed_memory_and_can_be_turned_off():
  pages = (200 << 20) // os.sysconf('SC_PAGE_SIZE')
  tuned, faults = _probe()
  assert tuned
  assert faults[0] > pages // 2  # the first round faults the buffer in ...
  assert max(faults[1:]) < pages // 20  # ... later rounds reuse it
  tuned, faults = _probe(VQVAE_STOCK_MALLOC='1')
  assert not tuned
  assert min(faults[1:]) > pages // 2  # stock glibc: mmap + munmap every round


@pytest.mark.parametrize('spec', ['fashion-mnist', 'prior'])
def test_precision_flag_sets_the_config(spec):
  import argparse  # pylint: disable=g-import-not-at-top
  from vqvae_jax.cli import flags  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser()
  flags.add_common_flags(parser)
  assert flags.build_config(parser.parse_args([]), spec, {}).precision == 'float32'
  args = parser.parse_args(['--precision', 'bfloat16'])
  assert flags.build_config(args, spec, {}).precision == 'bfloat16'
  with pytest.raises(SystemExit) as e:  # argparse: usage message, exit code 2
    parser.parse_args(['--precision', 'float16'])
  assert e.value.code == 2


@pytest.mark.parametrize('argv,precision,ynn_off', [
    ([], None, True), (['--precision', 'float32'], 'float32', True),
    (['--precision', 'bfloat16'], 'bfloat16', False),
    (['--set', 'precision=bfloat16'], 'bfloat16', False),
    (['--precision', 'bfloat16', '--set', 'precision=float32'], 'float32', True)])
def test_xla_flags_follow_the_precision(monkeypatch, argv, precision, ynn_off):
  """float32 turns XLA's YNNPACK fusions off; bfloat16 keeps them (its fast
  bfloat16 dots); a flag the user set in XLA_FLAGS is left alone."""
  import argparse  # pylint: disable=g-import-not-at-top
  from vqvae_jax.cli import flags  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser()
  flags.add_common_flags(parser)
  args = parser.parse_args(argv)
  assert flags.precision_of(args) == precision
  monkeypatch.setenv('XLA_FLAGS', '--xla_foo=1')
  flags.set_xla_flags(flags.precision_of(args))
  assert (flags.YNN_OFF in os.environ['XLA_FLAGS']) == ynn_off
  assert os.environ['XLA_FLAGS'].startswith('--xla_foo=1')
  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_experimental_ynn_fusion_type=individual_dot')
  flags.set_xla_flags(precision)
  assert os.environ['XLA_FLAGS'] == '--xla_cpu_experimental_ynn_fusion_type=individual_dot'
