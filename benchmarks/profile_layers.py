"""Per-layer timing of the convolution formulations in vqvae_jax.models.formulations (CPU).

Times forward + backward (vjp w.r.t. input and kernel, the input gradient
skipped for the first encoder layer as in training) of every formulation at
the VQ-VAE's batch-128 shapes; `auto` marks the one impl='auto' picks on
this backend (layers.auto_impls). XLA flags come from the environment, e.g.

  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python benchmarks/profile_layers.py
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from vqvae_jax.models import formulations, layers  # noqa: E402


def layer_shapes(size, channels, hidden=256, batch=128):
  """(name, impl table, auto kind, kernel size, x shape, c_out, input grad needed)."""
  q = size // 4
  return [
      ('down_a', formulations.DOWN_IMPLS, 'down_narrow', 4, (batch, size, size, channels), hidden,
       False),
      ('down_b', formulations.DOWN_IMPLS, 'down', 4, (batch, size // 2, size // 2, hidden), hidden,
       True),
      ('conv3x3', formulations.CONV3X3_IMPLS, 'conv3x3', 3, (batch, q, q, hidden), hidden, True),
      ('up_a', formulations.UP_IMPLS, 'up', 4, (batch, q, q, hidden), hidden, True),
      ('up_b', formulations.UP_IMPLS, 'up_narrow', 4, (batch, size // 2, size // 2, hidden), channels,
       True),
  ]


def time_fn(fn, args, reps):
  """Best wall and best process-CPU seconds of `reps` runs (after one warm-up).

  CPU time (both threads together) is the steadier figure on a shared machine."""
  jax.block_until_ready(fn(*args))
  wall, cpu = float('inf'), float('inf')
  for _ in range(reps):
    t0, c0 = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(*args))
    wall = min(wall, time.perf_counter() - t0)
    cpu = min(cpu, time.process_time() - c0)
  return wall, cpu


def main():
  ap = argparse.ArgumentParser(description=__doc__)
  ap.add_argument('--shape', default='28x28x1', choices=['28x28x1', '32x32x3'])
  ap.add_argument('--layers', default='down_a,down_b,conv3x3,up_a,up_b')
  ap.add_argument('--impls', default='', help='comma-separated subset (default all)')
  ap.add_argument('--reps', type=int, default=3)
  ap.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'],
                  help='compute dtype of x, kernel and bias (as --precision in training)')
  args = ap.parse_args()
  size, _, channels = (int(v) for v in args.shape.split('x'))
  want = set(args.layers.split(','))
  only = set(args.impls.split(',')) if args.impls else None
  key = jax.random.PRNGKey(0)
  print(f'XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r} shape={args.shape} dtype={args.dtype}', flush=True)
  auto = layers.auto_impls()
  for name, table, kind, ks, xs, co, need_dx in layer_shapes(size, channels):
    if name not in want:
      continue
    k1, k2, k3 = jax.random.split(key, 3)
    dtype = jnp.dtype(args.dtype)
    x = jax.random.normal(k1, xs).astype(dtype)
    kern = (jax.random.normal(k2, (ks, ks, xs[-1], co)) * 0.05).astype(dtype)
    bias = jnp.zeros((co,), dtype)
    for impl, f in table.items():
      if only and impl not in only:
        continue

      def fwd_bwd(x, kern, bias, f=f):
        if need_dx:
          y, vjp = jax.vjp(f, x, kern, bias)
        else:
          y, vjp = jax.vjp(lambda k, b: f(x, k, b), kern, bias)
        return vjp(jnp.cos(y))

      fwd = jax.jit(f)
      fb = jax.jit(fwd_bwd)
      tf = time_fn(fwd, (x, kern, bias), args.reps)
      tfb = time_fn(fb, (x, kern, bias), args.reps)
      mark = 'auto' if impl == auto[kind] else ''
      print(f'{name:8s} {impl:15s} {mark:4s} fwd {1e3 * tf[0]:7.1f} ms (cpu {1e3 * tf[1]:7.1f})   '
            f'fwd+bwd {1e3 * tfb[0]:7.1f} ms (cpu {1e3 * tfb[1]:7.1f})', flush=True)


if __name__ == '__main__':
  main()
