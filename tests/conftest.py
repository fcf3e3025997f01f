"""Test setup (before jax is imported): CPU only, 2 fake devices.

VQVAE_TEST_PLATFORMS names other JAX platforms to test on instead (e.g.
'cuda,cpu', as benchmarks/device_check.sh sets); then float32 matmuls and
convolutions run at full float32 precision (not TF32), GPU ops are
deterministic, GPU memory is allocated on demand (tests start training
subprocesses on the same device), and tests marked `two_devices` skip where
fewer than 2 local devices exist. On the default CPU setup they always run.
"""
import os

import pytest

_platforms = os.environ.get('VQVAE_TEST_PLATFORMS', '')
os.environ['JAX_PLATFORMS'] = _platforms or 'cpu'
_flags = os.environ.get('XLA_FLAGS', '')
if '--xla_force_host_platform_device_count' not in _flags:
  _flags += ' --xla_force_host_platform_device_count=2'
if _platforms and '--xla_gpu_deterministic_ops' not in _flags:
  _flags += ' --xla_gpu_deterministic_ops=true'
os.environ['XLA_FLAGS'] = _flags.strip()
if _platforms:
  os.environ.setdefault('JAX_DEFAULT_MATMUL_PRECISION', 'float32')
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')


def pytest_runtest_setup(item):
  if item.get_closest_marker('two_devices'):
    import jax  # pylint: disable=import-outside-toplevel  (after the environment above)
    if jax.local_device_count() < 2:
      pytest.skip(f'needs 2 local devices; {jax.default_backend()} has {jax.local_device_count()}')
