"""Command-line plumbing shared by the scripts: flags -> config, device checks."""
from __future__ import annotations

import argparse
import ctypes
import os

from absl import logging as absl_logging

from vqvae_jax import distributed
from vqvae_jax.cli import config_files
from vqvae_jax.errors import UserError

_GPU_NAMES = ('gpu', 'cuda')


def add_common_flags(parser: argparse.ArgumentParser) -> None:
  parser.add_argument('--config', default=None,
                      help='config file or name, e.g. configs/fashion_mnist.py:tiny or mnist '
                           '(default: train_vqvae.py the config of --dataset, train_prior.py '
                           'configs/prior.py)')
  parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                      help='override any config field (repeatable)')
  parser.add_argument('--max-steps', type=int, default=None,
                      help='stop after this many training steps in total')
  parser.add_argument('--seed', type=int, default=None)
  parser.add_argument('--device', default=None,
                      help='cpu, gpu/cuda or tpu: checked against what JAX finds '
                           '(default: whatever JAX picks)')
  parser.add_argument('--precision', choices=('float32', 'bfloat16'), default=None,
                      help='training compute precision; parameters stay float32 '
                           '(default: the config, float32)')
  parser.add_argument('--no-progress', action='store_true', help='no progress bar')
  distributed.add_flags(parser)


YNN_OFF = '--xla_cpu_experimental_ynn_fusion_type='


def set_xla_flags(precision: str | None = None) -> None:
  """XLA CPU flags that the benchmarks found faster; set before JAX starts its
  backend. float32: YNNPACK fusions off (its float32 convolutions and dots are
  slower than XLA's default path on this model). bfloat16: XLA's default,
  which hands bfloat16 dots to YNNPACK (its only fast bfloat16 path; see
  models.formulations.conv_bf16). XLA_FLAGS naming the flag win."""
  flags = os.environ.get('XLA_FLAGS', '')
  if precision != 'bfloat16' and 'xla_cpu_experimental_ynn_fusion_type' not in flags:
    os.environ['XLA_FLAGS'] = (flags + ' ' + YNN_OFF).strip()


def precision_of(args) -> str | None:
  """The precision a command line asks for (--precision, or --set precision=...)
  before the config is loaded (None: the config's)."""
  value = getattr(args, 'precision', None)
  for item in getattr(args, 'set', None) or ():  # as config_files.apply_overrides reads them
    key, _, v = item.partition('=')
    if key.strip() == 'precision':
      value = v.strip()
  return value


# glibc mallopt() parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def tune_malloc() -> bool:
  """Keeps freed host memory for reuse instead of returning it to the OS.

  XLA:CPU allocates each step's temporary buffers (~470 MB for the batch-128
  VQ-VAE step) afresh from a worker thread; glibc serves such sizes with mmap
  in a thread arena and unmaps them on free, so every step page-faults the
  whole buffer in again (~0.3 s of kernel time per step, measured). One arena,
  no mmap and no trimming make glibc reuse the same heap memory: the resident
  size stays at its peak instead. Must run before JAX starts its threads.
  No-op (False) off glibc or with VQVAE_STOCK_MALLOC=1.
  """
  if os.environ.get('VQVAE_STOCK_MALLOC') == '1':
    return False
  try:
    libc = ctypes.CDLL('libc.so.6')
    return all(libc.mallopt(param, value) == 1 for param, value in (
        (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1)))
  except (OSError, AttributeError):
    return False


def select_platform(device: str | None) -> None:
  """`--device cpu` keeps JAX on the CPU; must run before JAX initialises."""
  if device and device.lower() == 'cpu':
    os.environ['JAX_PLATFORMS'] = 'cpu'


def check_device(device: str | None) -> None:
  """Fails clearly when the asked-for accelerator is not there."""
  if not device or device.lower() == 'cpu':
    return
  device = device.lower()
  if device not in _GPU_NAMES + ('tpu',):
    raise UserError(f'--device must be cpu, gpu, cuda or tpu, got {device!r}')
  import jax  # pylint: disable=g-import-not-at-top  (after select_platform)
  platform = 'gpu' if device in _GPU_NAMES else device
  try:
    found = jax.devices(platform)
  except RuntimeError:
    found = []
  if not found:
    raise UserError(f'--device {device} was asked for, but JAX finds no {platform.upper()} '
                    f'(devices: {", ".join(d.platform for d in jax.devices())}); install '
                    'the matching jaxlib plugin (e.g. pip install "jax[cuda13]") or use --device cpu')


def setup_runtime(args) -> None:
  """Host malloc, XLA flags, platform, multi-host connection, device check,
  quiet absl: in that order."""
  tune_malloc()
  set_xla_flags(precision_of(args))
  select_platform(args.device)
  distributed.initialize(args)
  check_device(args.device)
  absl_logging.set_verbosity(absl_logging.ERROR)


def build_config(args, default_spec: str, seed_flags: dict):
  """Loads the config and applies seed-style flags, then --set overrides."""
  config = config_files.load_config(args.config or default_spec)
  for key, value in seed_flags.items():
    if value is not None:
      config_files.override(config, key, value)
  config_files.apply_overrides(config, args.set)
  if args.max_steps is not None:
    config_files.override(config, 'max_steps', args.max_steps)
  if args.seed is not None:
    config_files.override(config, 'seed', args.seed)
  if args.device is not None:
    config_files.override(config, 'device', args.device)
  if args.precision is not None:
    config_files.override(config, 'precision', args.precision)
  if args.no_progress:
    config_files.override(config, 'progress', False)
  return config
