"""Multi-host training on JAX's own distributed runtime.

Every process runs the same command; `initialize` connects them through
`jax.distributed.initialize` before JAX touches a device. Then `jax.pmap` maps
over each process's local devices while its collectives (`lax.pmean`/`psum`
over 'batch') span the devices of all processes; each process feeds only its
slice of every global batch (`data.train_batches(process_index=...)`), so the
global batch, the data order and the result do not depend on how many
processes share the work. Checkpoints are written by Orbax's multi-host
machinery; logs, images and progress bars come from process 0.

Ways to configure, in order of precedence:
  * flags: --coordinator-address HOST:PORT --num-processes N --process-id I
  * environment: VQVAE_COORDINATOR_ADDRESS, VQVAE_NUM_PROCESSES, VQVAE_PROCESS_ID
  * --distributed auto: JAX's own detection (SLURM, Open MPI, cloud TPU, ...)
Nothing set: a single process.
"""
from __future__ import annotations

import argparse
import os

from vqvae_jax.errors import UserError

_ENV = {'coordinator_address': 'VQVAE_COORDINATOR_ADDRESS',
        'num_processes': 'VQVAE_NUM_PROCESSES', 'process_id': 'VQVAE_PROCESS_ID'}


def add_flags(parser: argparse.ArgumentParser) -> None:
  g = parser.add_argument_group('multi-host (jax.distributed)')
  g.add_argument('--coordinator-address', default=None, metavar='HOST:PORT',
                 help='address of process 0, reachable from every process')
  g.add_argument('--num-processes', type=int, default=None)
  g.add_argument('--process-id', type=int, default=None)
  g.add_argument('--distributed', choices=('off', 'auto'), default='off',
                 help="'auto': let JAX detect the cluster (SLURM, MPI, TPU)")
  g.add_argument('--init-timeout', type=int, default=300,
                 help='seconds to wait for every process to connect')


def settings(args) -> dict | None:
  """The keyword arguments for jax.distributed.initialize, or None (one process)."""
  kw = {}
  for key, env in _ENV.items():
    value = getattr(args, key, None)
    if value is None and os.environ.get(env):
      value = os.environ[env]
    if value is None:
      continue
    if key == 'coordinator_address':
      kw[key] = str(value)
      continue
    try:
      kw[key] = int(value)
    except ValueError:
      raise UserError(f'{env} must be an integer, got {value!r}') from None
  if not kw:
    return {} if getattr(args, 'distributed', 'off') == 'auto' else None
  missing = [k for k in _ENV if k not in kw]
  if missing:
    raise UserError('multi-host training needs --coordinator-address, --num-processes and '
                    f'--process-id (or their VQVAE_* variables); missing: {", ".join(missing)}')
  if not 0 <= kw['process_id'] < kw['num_processes']:
    raise UserError(f'--process-id must be in [0, {kw["num_processes"]}), got {kw["process_id"]}')
  return kw


def initialize(args) -> None:
  """Connects this process to the others; call before anything else uses JAX."""
  kw = settings(args)
  if kw is None:
    return
  import jax  # pylint: disable=g-import-not-at-top
  try:
    jax.distributed.initialize(initialization_timeout=args.init_timeout, **kw)
  except (RuntimeError, ValueError) as e:
    raise UserError(f'jax.distributed.initialize failed ({kw or "auto-detection"}): '
                    f'{str(e).splitlines()[0][:300]}') from None


def is_main_process() -> bool:
  """True for process 0 of a multi-host run, and for a single process: only it
  shows progress bars and warnings. Never starts JAX's backend by itself, so it
  is safe before `initialize`."""
  import jax  # pylint: disable=g-import-not-at-top
  if not jax.distributed.is_initialized():
    return True
  return jax.process_index() == 0
