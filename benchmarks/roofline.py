"""How close the VQ-VAE step runs to this CPU's float32 matmul rate (issue 13).

    python3 benchmarks/roofline.py --train benchmarks/results/bench_train_epyc-avx512-2.json

Prints ONE JSON line: the GFLOP/s of float32 matrix products that XLA (with the
training scripts' flags and malloc) and PyTorch (the torch venv, 2 threads)
reach on this machine, at the shapes the step's big layers have (batch 128):

  conv3x3_im2col   [6272, 2304] @ [2304, 256]  a 3x3 convolution 7x7x256 as one dot
  conv4x4_s2d      [6272, 4096] @ [4096, 256]  the second DownConv after space-to-depth
  conv1x1          [25088, 256] @ [256, 256]   a 1x1 convolution on 14x14x256
  square2048       [2048, 2048] @ [2048, 2048] a large square product
  conv3x3_lax      the 3x3 convolution itself, [128, 7, 7, 256] -> 256, SAME
                   (lax.conv_general_dilated; PyTorch: conv2d, no_grad)

and, given a bench_train.py JSON (`--train`; or bench_sampling.py's, `--sampling`,
for the prior's training step), the step's FLOPs (XLA's count of
the compiled step) times each library's measured steps per second: the rate
the whole step achieves, as a fraction of the best dot rate measured here.
Both libraries' steps are charged the same (XLA's) FLOPs. A step cannot run
faster than its FLOPs at the best dot rate, so `ratio_bound` =
best JAX dot rate / PyTorch's achieved step rate is the most vqvae-jax could be
ahead of PyTorch's measured step without beating the dot kernels themselves.
Best of `--repeats` calls per shape after a warm-up (the machine's speed
drifts; the best is the rate the kernels can reach).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vqvae_jax.cli import flags  # noqa: E402

SHAPES = {'conv3x3_im2col': (6272, 2304, 256), 'conv4x4_s2d': (6272, 4096, 256),
          'conv1x1': (25088, 256, 256), 'square2048': (2048, 2048, 2048)}

# A 3x3 convolution of the residual blocks, [128, 7, 7, 256] -> 256 channels, SAME.
CONV = {'conv3x3_lax': (128, 7, 256, 3)}

_TORCH = r'''
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[1])); repeats = int(sys.argv[2])
def best(f):
  f()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter(); f(); times.append(time.perf_counter() - t0)
  return min(times)
out = {}
for name, (m, k, n) in json.loads(sys.argv[3]).items():
  a, b = torch.randn(m, k), torch.randn(k, n)
  out[name] = 2 * m * k * n / best(lambda: a @ b) / 1e9
for name, (batch, hw, c, kk) in json.loads(sys.argv[4]).items():
  x, w = torch.randn(batch, c, hw, hw), torch.randn(c, c, kk, kk)
  with torch.no_grad():
    t = best(lambda: torch.nn.functional.conv2d(x, w, padding=kk // 2))
  out[name.replace('_lax', '')] = 2 * batch * hw * hw * kk * kk * c * c / t / 1e9
print(json.dumps({'gflops': out, 'torch': torch.__version__}))
'''


def _best_s(f, args, repeats: int) -> float:
  """Fastest of `repeats` calls of jitted `f(*args)`, after one warm-up call."""
  f(*args).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    f(*args).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return best


def jax_rates(repeats: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top  (after the flags)
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  out = {}
  for name, (m, k, n) in SHAPES.items():
    ka, kb = jax.random.split(jax.random.key(0))
    a, b = jax.random.normal(ka, (m, k)), jax.random.normal(kb, (k, n))
    f = jax.jit(lambda x, y: jnp.dot(x, y, precision='highest'))
    out[name] = 2 * m * k * n / _best_s(f, (a, b), repeats) / 1e9
  for name, (batch, hw, c, kk) in CONV.items():
    ka, kb = jax.random.split(jax.random.key(1))
    x, w = jax.random.normal(ka, (batch, hw, hw, c)), jax.random.normal(kb, (kk, kk, c, c))
    f = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
        x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
    out[name] = 2 * batch * hw * hw * kk * kk * c * c / _best_s(f, (x, w), repeats) / 1e9
  return out


def torch_rates(python: str, threads: int, repeats: int) -> dict:
  res = subprocess.run([python, '-c', _TORCH, str(threads), str(repeats), json.dumps(SHAPES),
                        json.dumps(CONV)],
                       capture_output=True, text=True, timeout=600, check=True)
  return json.loads(res.stdout.strip().splitlines()[-1])


def step_rates(d: dict, kind: str, best_dot: float) -> dict:
  """Per input shape: the step's GFLOP, each library's achieved GFLOP/s (the
  same FLOPs for both), as a fraction of `best_dot`, and the bound on the ratio."""
  if kind == 'vqvae':
    gflop, imgs, ratio = d.get('step_gflops') or {}, d, d.get('ratio') or {}
  else:
    train = d.get('prior_train_imgs_per_s') or {}
    gflop, ratio = train.get('step_gflops') or {}, train.get('ratio') or {}
    imgs = {f'{lib}_imgs_per_s': train.get(lib) for lib in ('jax', 'torch')}
  out = {}
  for s, g in gflop.items():
    if not g:
      continue
    rate = {lib: g * imgs[f'{lib}_imgs_per_s'][s] / d.get('batch', 128)
            for lib in ('jax', 'torch') if (imgs.get(f'{lib}_imgs_per_s') or {}).get(s)}
    row = {'step_gflop': g, **{f'{lib}_step_gflops': round(r, 1) for lib, r in rate.items()},
           **{f'{lib}_fraction_of_best_jax_dot': round(r / best_dot, 3)
              for lib, r in rate.items()}}
    if 'torch' in rate:
      row['ratio_bound'] = round(best_dot / rate['torch'], 3)
      row['measured_ratio'] = ratio.get(s)
    out[s] = row
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--train', default=None, help='a bench_train.py JSON (step FLOPs and img/s)')
  p.add_argument('--sampling', default=None,
                 help='a bench_sampling.py JSON with the prior step\'s FLOPs (step_gflops)')
  p.add_argument('--torch-python', default='.venv-torch/bin/python')
  p.add_argument('--threads', type=int, default=2)
  p.add_argument('--repeats', type=int, default=10)
  args = p.parse_args(argv)
  flags.tune_malloc()
  flags.set_xla_flags('float32')
  from benchmarks.machine import CpuSnap, runtime_info  # pylint: disable=g-import-not-at-top
  snap = CpuSnap()
  out = {'bench': 'roofline', 'shapes_mkn': SHAPES, 'jax_gflops': jax_rates(args.repeats)}
  try:
    t = torch_rates(args.torch_python, args.threads, args.repeats)
    out['torch_gflops'], out['torch'] = t['gflops'], t['torch']
  except (OSError, subprocess.SubprocessError) as e:
    out['torch_gflops'], out['torch_error'] = None, str(e)
  best_jax = max(out['jax_gflops'].values())  # the best of the dots and the convolution
  out['best_jax_dot_gflops'] = round(best_jax, 1)
  for kind, path in (('vqvae', args.train), ('prior', args.sampling)):
    if path:
      with open(path) as f:
        out[f'{kind}_json'] = os.path.basename(path)
        out[f'{kind}_step'] = step_rates(json.load(f), kind, best_jax)
  out.update(runtime_info())
  out['other_procs_cpu_frac'], out['host_steal_cpu_frac'] = snap.other_frac(), snap.steal_frac()
  out['xla_flags'] = os.environ.get('XLA_FLAGS', '')
  print(json.dumps(out, separators=(',', ':')))


if __name__ == '__main__':
  main()
