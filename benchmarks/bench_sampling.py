"""Prior speed: JAX samplers (plain and fast) and training vs the PyTorch reference.

Prints ONE JSON line on stdout (progress on stderr).

    python benchmarks/bench_sampling.py                  # 3 alternating rounds, ~4 min
    python benchmarks/bench_sampling.py --rounds 1 --sections sample --skip-plain
    python benchmarks/bench_sampling.py --no-torch --skip-plain   # JAX only (e.g. a GPU)

Measured, with the prior's defaults (K 512, 10 classes, 15 layers, hidden 64,
random weights, float32, CPU):
  sample  seconds to sample 64 class-conditional 8x8 code grids (labels 0..9
          repeated) with `sampling.sample_codes` (fast, cached activations) and
          `sampling.sample_codes_plain` (one full pass per position), after
          compilation (compile time reported apart), and the reference's
          `prior_sample_s` from `bench_torch.py --quick` (its --quick figure is
          the median full forward pass x 64 positions). `same_samples`: the
          fast and plain samplers drew identical codes for the benchmark key.
  train   prior training images/s at batch 128 (forward, cross-entropy,
          backward, Adam 3e-4) on random 7x7 and 8x8 codes, median step after
          compiling (compile_s: lower + compile) and one untimed step, against
          the reference's `prior_train_imgs_per_s`; `step_gflops`: XLA's FLOP
          count of that step (benchmarks/roofline.py).
Each round runs the reference in a subprocess, then the JAX measurements, so
the two see the same machine state (`other_procs_cpu_frac`: the share of
the machine other processes used during each half of each round); medians
over rounds, ratios of medians
(--no-torch: JAX only, the reference's figures and the ratios are null).
The reference needs a venv with torch (see ../shared/bench/README.md):
    python3 -m venv .venv-torch && .venv-torch/bin/pip install torch==2.13.0 numpy
"""
from __future__ import annotations

import os
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)
# JAX picks the device (`backend` in the JSON). XLA flags and host malloc as
# in the training scripts (train_prior.py runs with both), set before JAX is
# imported and its threads start; --stock-xla / --stock-malloc leave them.
from vqvae_jax.cli.flags import set_xla_flags, tune_malloc  # noqa: E402
if '--stock-xla' not in sys.argv[1:]:
  set_xla_flags()
MALLOC_TUNED = '--stock-malloc' not in sys.argv[1:] and tune_malloc()

# pylint: disable=g-import-not-at-top,wrong-import-position
import argparse
import json
import platform
import statistics
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vqvae_jax.models import prior as prior_lib, sampling  # noqa: E402
from benchmarks.machine import CpuSnap, compiled_flops, cpu_info  # noqa: E402

GRIDS = 64
SHAPE = (8, 8)
BATCH = 128
NUM_CLASSES = 10


def _log(*a):
  print(*a, file=sys.stderr, flush=True)


def _timed(fn):
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn())
  return time.perf_counter() - t0, out


def _torch_round(args, sections):
  only = ','.join({'sample': 'sample', 'train': 'prior'}[s] for s in sections)
  cmd = [args.torch_python, args.torch_bench, f'--{args.torch_plan}', '--only', only,
         '--threads', str(args.threads)]
  res = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if res.returncode != 0:
    raise SystemExit(f'error: {" ".join(cmd)} failed:\n{res.stderr[-2000:]}')
  return json.loads(res.stdout.strip().splitlines()[-1])


class _Sampling:
  """The two JAX samplers on the default prior, compiled once."""

  def __init__(self, model, params, names):
    self.model, self.params, self.names = model, params, names
    self.labels = jnp.arange(GRIDS, dtype=jnp.int32) % NUM_CLASSES
    self.key = jax.random.key(1234)
    self.compile_s = {}
    self.codes = {}
    for name in names:
      self.compile_s[name], self.codes[name] = _timed(lambda n=name: self.run(n))

  def run(self, name):
    fn = sampling.sample_codes if name == 'fast' else sampling.sample_codes_plain
    return fn(self.model, self.params, self.labels, SHAPE, self.key)

  def time(self, name):
    return _timed(lambda: self.run(name))[0]


class _Training:
  """One jitted prior training step per grid size, as in the reference."""

  def __init__(self, model, params, grids=(7, 8)):
    self.model, self.params = model, params
    self.tx = optax.adam(3e-4)
    step = jax.jit(self._step, donate_argnums=(0, 1))
    self.state, self.compiled = {}, {}
    self.compile_s, self.gflops = {}, {}
    rng = np.random.default_rng(0)
    for hw in grids:
      codes = jnp.asarray(rng.integers(0, model.num_codes, (BATCH, hw, hw)), jnp.int32)
      labels = jnp.asarray(rng.integers(0, NUM_CLASSES, (BATCH,)), jnp.int32)
      p = jax.tree.map(jnp.copy, params)
      self.state[hw] = [p, self.tx.init(p), codes, labels]
      t0 = time.perf_counter()
      self.compiled[hw] = step.lower(*self.state[hw]).compile()
      self.compile_s[f'{hw}x{hw}'] = time.perf_counter() - t0
      flops = compiled_flops(self.compiled[hw])
      self.gflops[f'{hw}x{hw}'] = round(flops / 1e9, 2) if flops else None
      self.time(hw)  # the first step (buffers, caches) is not timed

  def _step(self, params, opt, codes, labels):
    def loss_fn(p):
      logits = self.model.apply({'params': p}, codes, labels)
      return prior_lib.cross_entropy(logits, codes)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt = self.tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  def time(self, hw):
    p, o, codes, labels = self.state[hw]
    t, (p, o, loss) = _timed(lambda: self.compiled[hw](p, o, codes, labels))
    if not np.isfinite(float(loss)):
      raise SystemExit('error: non-finite loss in the training benchmark')
    self.state[hw][:2] = [p, o]
    return t


def _device():
  d = jax.local_devices()[0]
  return f'{d.platform}: {d.device_kind}'


def _median(xs):
  return statistics.median(xs) if xs else None


def _rounds(args, sections, samp, train):
  """Alternating rounds (reference, then JAX); returns (runs {name: [...]}, reference info)."""
  runs = {'torch_sample': [], 'jax_fast': [], 'jax_plain': [], 'torch_train': [],
          'jax_train': [], 'other_procs_cpu_frac': []}
  torch_info = {}
  for r in range(args.rounds):
    snap = CpuSnap()
    ref = None if args.no_torch else _torch_round(args, sections)
    torch_other, snap = snap.other_frac(), CpuSnap()
    if ref:
      torch_info = {k: ref.get(k) for k in ('torch', 'threads', 'prior_sample_method')}
      _log(f'round {r}: torch',
           {k: ref.get(k) for k in ('prior_sample_s', 'prior_train_imgs_per_s')})
    if samp:
      if ref:
        runs['torch_sample'].append(ref['prior_sample_s']['8x8'])
      runs['jax_fast'].extend(samp.time('fast') for _ in range(args.fast_runs))
      if 'plain' in samp.names:
        runs['jax_plain'].append(samp.time('plain'))
      _log(f'round {r}: jax fast {runs["jax_fast"][-1]:.3f} s, plain {runs["jax_plain"][-1:]} s')
    if train:
      if ref:
        runs['torch_train'].append(ref['prior_train_imgs_per_s'])
      step_s = {f'{hw}x{hw}': _median([train.time(hw) for _ in range(args.train_steps)])
                for hw in (7, 8)}
      runs['jax_train'].append({k: BATCH / v for k, v in step_s.items()})
      _log(f'round {r}: jax train img/s', runs['jax_train'][-1])
    runs['other_procs_cpu_frac'].append({'torch': torch_other, 'jax': snap.other_frac()})
  return runs, torch_info


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument('--torch-python', default=os.path.join(_REPO, '.venv-torch', 'bin', 'python'))
  ap.add_argument('--torch-bench', default=os.path.join(
      os.path.dirname(_REPO), 'shared', 'bench', 'bench_torch.py'))
  ap.add_argument('--no-torch', action='store_true', help='time the JAX side only')
  ap.add_argument('--rounds', type=int, default=3)
  ap.add_argument('--torch-plan', default='full', choices=('full', 'quick'),
                  help="bench_torch.py's plan: full (2 full-batch warm-up steps, <= 10 timed, "
                       'complete sampling runs; default) or quick (1 batch-16 warm-up, 3 timed)')
  ap.add_argument('--fast-runs', type=int, default=3, help='fast-sampler runs per round')
  ap.add_argument('--train-steps', type=int, default=3, help='timed steps per size per round')
  ap.add_argument('--sections', default='sample,train', help='subset of: sample, train')
  ap.add_argument('--threads', type=int, default=2, help='torch threads')
  ap.add_argument('--stock-malloc', action='store_true', help='leave glibc malloc as it is')
  ap.add_argument('--stock-xla', action='store_true',
                  help='leave XLA_FLAGS as they are (the training scripts turn YNN fusions off)')
  ap.add_argument('--skip-plain', action='store_true',
                  help='leave out the plain JAX sampler (slow to compile and run)')
  args = ap.parse_args()
  sections = [s for s in ('sample', 'train') if s in args.sections.split(',')]
  if not sections or set(args.sections.split(',')) - {'sample', 'train'}:
    ap.error(f'--sections must name sample and/or train, got {args.sections!r}')
  for path in () if args.no_torch else (args.torch_python, args.torch_bench):
    if not os.path.exists(path):
      raise SystemExit(f'error: {path} not found (see this script\'s docstring)')

  t_start, load0, whole = time.perf_counter(), os.getloadavg(), CpuSnap()
  model = prior_lib.GatedPixelCNN(num_classes=NUM_CLASSES)
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, *SHAPE), jnp.int32),
                               jnp.zeros((1,), jnp.int32))['params']
  names = ('fast',) if args.skip_plain else ('fast', 'plain')
  samp = _Sampling(model, params, names) if 'sample' in sections else None
  train = _Training(model, params) if 'train' in sections else None
  runs, torch_info = _rounds(args, sections, samp, train)

  out = {'bench': 'prior_sampling', 'grids': GRIDS, 'shape': list(SHAPE),
         'K': model.num_codes, 'layers': model.num_layers, 'hidden': model.hidden,
         'classes': NUM_CLASSES, 'rounds': args.rounds}
  if samp:
    fast, plain, ref = (_median(runs[k]) for k in ('jax_fast', 'jax_plain', 'torch_sample'))
    out.update({'jax_fast_s': fast, 'jax_plain_s': plain, 'torch_s': ref,
                'speedup_fast_vs_torch': ref / fast if ref else None,
                'compile_s': samp.compile_s})
    if plain is not None:
      out['speedup_fast_vs_plain'] = plain / fast
      out['same_samples'] = bool((samp.codes['fast'] == samp.codes['plain']).all())
  if train:
    jax_rate = {k: _median([r[k] for r in runs['jax_train']]) for k in ('7x7', '8x8')}
    ref_rate = {k: _median([r[k] for r in runs['torch_train']]) for k in ('7x7', '8x8')}
    out['prior_train_imgs_per_s'] = {
        'jax': jax_rate, 'torch': ref_rate,
        'ratio': {k: jax_rate[k] / ref_rate[k] if ref_rate[k] else None for k in jax_rate},
        'ratio_per_round': [{k: j[k] / t[k] for k in j}
                            for j, t in zip(runs['jax_train'], runs['torch_train'])],
        'compile_s': train.compile_s, 'step_gflops': train.gflops}
  other = runs.pop('other_procs_cpu_frac')
  out['other_procs_cpu_frac'] = {'jax_rounds': [o['jax'] for o in other],
                                 'torch_rounds': [o['torch'] for o in other if not args.no_torch]}
  out['runs'] = {k: v for k, v in runs.items() if v}
  out.update({'reference': dict(torch_info, plan=None if args.no_torch else args.torch_plan),
              'jax': jax.__version__, 'date': time.strftime('%Y-%m-%d'),
              'backend': jax.default_backend(), 'device': _device(),
              'malloc_tuned': bool(MALLOC_TUNED), 'xla_flags': os.environ.get('XLA_FLAGS', ''),
              'python': platform.python_version(), **cpu_info(),
              'host_steal_cpu_frac': whole.steal_frac(),
              'cpus': os.cpu_count(), 'loadavg_start_end': [load0[0], os.getloadavg()[0]],
              'wall_s': time.perf_counter() - t_start})
  print(json.dumps(out, separators=(',', ':')))


if __name__ == '__main__':
  main()
