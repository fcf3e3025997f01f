"""Per-op profile of one whole training step (XLA:CPU), by jax.profiler.

Traces a few steps of bench_train.JaxTrain (VQ-VAE; same model, flags and
malloc as bench_train.py) or, with --model prior, of bench_sampling's prior
training step (batch 128, random codes on a --grid x --grid map), and sums the trace's per-op durations by HLO op name, grouped
by kind (dot, convolution, fusion, copy/transpose, reduce, ...). Prints the
top ops and one JSON line with the per-kind totals (ms per step).

  python3 benchmarks/profile_step.py --precision bfloat16 --shape 28x28x1
  python3 benchmarks/profile_step.py --stock-xla ...     # XLA's own flags (YNN on)
  python3 benchmarks/profile_step.py --model prior --grid 8
"""
from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_train  # noqa: E402  (sets the XLA flags and malloc before jax is imported)

import argparse  # noqa: E402

import jax  # noqa: E402

from machine import compiled_flops  # noqa: E402


def kind_of(name, description=''):
  """Coarse kind of an op from its name and describe() text."""
  inner = description.split(' | ', 1)[1] if ' | ' in description else ''
  if inner.startswith('dot'):
    return 'dot'
  if inner.startswith('convolution'):
    return 'convolution'
  for kind, pat in (('dot', r'^dot|gemm|matmul'), ('convolution', r'^convolution'),
                    ('copy/transpose', r'copy|transpose|bitcast'),
                    ('reduce', r'reduce'), ('fusion', r'fusion'), ('custom', r'custom')):
    if re.search(pat, name):
      return kind
  return 'other'


def describe(hlo, name):
  """Result shape of HLO instruction `name` and, for a fusion, the dots and
  convolutions inside it (shapes and dimension numbers), from the HLO text."""
  m = re.search(r'^\s*(?:ROOT )?%?' + re.escape(name) + r' = (\S+) (\w[\w-]*)\((.*)$', hlo, re.M)
  if not m:
    return ''
  out = f'{m.group(1)} {m.group(2)}'
  calls = re.search(r'calls=%?([\w.\-]+)', m.group(3))
  if calls:
    body = re.search(r'^%?' + re.escape(calls.group(1)) + r' .*?\{\n(.*?)\n\}', hlo, re.M | re.S)
    if body:
      inner = re.findall(r'= (\S+) (dot|convolution)\(([^)]*)\)(.*)', body.group(1))
      out += ' | ' + '; '.join(f'{k} {shape} {dims.strip()[:80]}' for shape, k, _, dims in inner)
  return out


class _PriorTrain:
  """bench_sampling's prior training step on one grid, with JaxTrain's
  interface (run(n) -> seconds per step, step.as_text(), flops)."""

  def __init__(self, grid, dtype):
    import bench_sampling  # noqa: E402  pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    from vqvae_jax.models import prior as prior_lib  # pylint: disable=import-outside-toplevel
    model = prior_lib.GatedPixelCNN(num_classes=bench_sampling.NUM_CLASSES, dtype=dtype)
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, grid, grid), jnp.int32),
                                 jnp.zeros((1,), jnp.int32))['params']
    self.train = bench_sampling._Training(model, params, grids=(grid,))  # pylint: disable=protected-access
    self.grid = grid
    self.step = self.train.compiled[grid]
    self.flops = compiled_flops(self.step)

  def run(self, n):
    return [self.train.time(self.grid) for _ in range(n)]


def main():
  ap = argparse.ArgumentParser(description=__doc__)
  ap.add_argument('--model', default='vqvae', choices=('vqvae', 'prior'))
  ap.add_argument('--shape', default='28x28x1', choices=list(bench_train.SHAPES))
  ap.add_argument('--grid', type=int, default=8, help='prior: code grid side')
  ap.add_argument('--precision', default='float32', choices=list(bench_train.PRECISIONS))
  ap.add_argument('--impl', default='', help='as bench_train.py --impl')
  ap.add_argument('--batch', type=int, default=bench_train.BATCH)
  ap.add_argument('--steps', type=int, default=3)
  ap.add_argument('--top', type=int, default=25)
  ap.add_argument('--stock-xla', action='store_true')
  ap.add_argument('--stock-malloc', action='store_true')
  args = ap.parse_args()
  dtype, matmul_precision = bench_train.PRECISIONS[args.precision]
  if matmul_precision:
    jax.config.update('jax_default_matmul_precision', matmul_precision)
  impls = tuple(tuple(kv.split('=')) for kv in args.impl.split(',') if kv)
  if args.model == 'prior':
    train = _PriorTrain(args.grid, dtype)
  else:
    size, channels = bench_train.SHAPES[args.shape]
    train = bench_train.JaxTrain(size, channels, impls=impls, dtype=dtype, batch=args.batch)
  train.run(2)
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d):
      times = train.run(args.steps)
    (path,) = glob.glob(os.path.join(d, '**', '*.trace.json.gz'), recursive=True)
    trace = json.load(gzip.open(path))
  per_op = collections.Counter()
  for ev in trace['traceEvents']:
    name = ev.get('name', '')
    if ev.get('ph') != 'X' or 'Thunk' in name or name.startswith(('$', 'jit_', 'pmap_')):
      continue
    if not re.match(r'^[a-z_][\w.\-]*$', name):  # HLO instruction names only
      continue
    per_op[name] += ev['dur'] / 1e3 / args.steps  # us -> ms per step
  hlo = train.step.as_text()
  per_kind = collections.Counter()
  for name, ms in per_op.items():
    per_kind[kind_of(name, describe(hlo, name))] += ms
  step_ms = 1e3 * min(times)
  for name, ms in per_op.most_common(args.top):
    print(f'{ms:8.1f} ms  {name:32s} {describe(hlo, name)}', file=sys.stderr)
  print(json.dumps({'model': args.model,
                    'shape': f'{args.grid}x{args.grid}' if args.model == 'prior' else args.shape, 'precision': args.precision, 'batch': args.batch,
                    'step_ms': round(step_ms, 1), 'ops_ms': round(sum(per_op.values()), 1),
                    'per_kind_ms': {k: round(v, 1) for k, v in per_kind.most_common()},
                    'xla_flags': os.environ.get('XLA_FLAGS', ''), 'flops': train.flops}))


if __name__ == '__main__':
  main()
