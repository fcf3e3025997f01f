"""Test setup: CPU only, 2 fake devices (set before jax is imported)."""
import os

os.environ['JAX_PLATFORMS'] = 'cpu'
_flags = os.environ.get('XLA_FLAGS', '')
if '--xla_force_host_platform_device_count' not in _flags:
  _flags += ' --xla_force_host_platform_device_count=2'
os.environ['XLA_FLAGS'] = _flags.strip()
