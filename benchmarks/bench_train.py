"""VQ-VAE training speed on CPU: this project's train step against PyTorch.

Prints ONE JSON line on stdout (progress on stderr):

  jax_imgs_per_s / torch_imgs_per_s   train images/s at batch 128, hidden 256,
      K 512, Adam 2e-4 for 28x28x1 and 32x32x3 inputs: one full step (forward,
      reconstruction + codebook + commitment losses, backward, Adam update).
      JAX runs vqvae_jax.train.vqvae.train_step, pmap'd over one device exactly
      as the training loop does (state donated); PyTorch runs
      /work/shared/bench/bench_torch.py --quick --only vqvae,vq in a
      subprocess. Each figure is the median over rounds of per-round medians.
  ratio                              JAX / PyTorch, median of the per-round
      ratios (rounds alternate JAX, PyTorch, JAX, ... so that load from other
      processes hits both); ratio_per_round lists them.
  compile_s                          lower + compile of the train step.
  vq_only_ms                         vector quantisation alone on 8192 x 256
      vectors, K 512 (z_e [128, 8, 8, 256]): fwd_bwd = assignment, gather,
      straight-through, codebook and commitment losses, backward with a fixed
      random upstream gradient; assign = nearest-code search only. Both
      libraries, medians.
  other_procs_cpu_frac               share of the machine used by other
      processes during the run (> 0.05: the numbers were taken under load).
  host_steal_cpu_frac                share of the CPUs' time the hypervisor
      gave to other guests during the run (/proc/stat steal): load that no
      process in this VM shows.

  layer_impls                        the convolution formulations used
      (layers.effective_impls: the backend's auto table, then --impl).
  precision, matmul_precision        --precision: float32 (full float32
      matmuls and convolutions, jax_default_matmul_precision='float32'),
      tf32 (float32 model, 'tensorfloat32' matmuls: tensor cores on GPUs) or
      bfloat16 (the model computes in bfloat16 with float32 parameters, as
      training's --precision bfloat16). On CPU only bfloat16 changes anything.
  device, step_gflops, peak_tflops, peak_fraction   the device; XLA's FLOP
      count of one step; the card's dense peak for --precision (float32
      vector units, or tensor cores for tf32/bfloat16; None if unknown) and
      the fraction of it achieved. fp32_peak_tflops is the float32 peak.

Usage:
  python benchmarks/bench_train.py                      # 3 rounds, ~3 min
  python benchmarks/bench_train.py --rounds 1 --no-torch
  python benchmarks/bench_train.py --impl up=sub2_conv,down=s2d_dotgrad
  python benchmarks/bench_train.py --no-torch --precision bfloat16   # e.g. on a GPU

The PyTorch side needs a venv with torch (see benchmarks/README.md):
  python3 -m venv .venv-torch && .venv-torch/bin/pip install torch==2.13.0 numpy

XLA flags: the training scripts' (vqvae_jax.cli.flags.set_xla_flags, set
before JAX starts unless XLA_FLAGS already names them; --stock-xla: none):
float32 with YNN fusions off (its float32 convolutions and dots are slower
than the default Eigen path on this model), bfloat16 with XLA's default (its
YNNPACK bfloat16 dots are the fast path the bfloat16 formulations use).
Host malloc is tuned as in the training scripts (vqvae_jax.cli.flags.tune_malloc:
freed memory is reused, not page-faulted in again every step) unless
--stock-malloc; the JSON says which (`malloc_tuned`).
"""
from __future__ import annotations

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)
# As the project's entry points do (vqvae_jax.cli.flags.setup_runtime), before
# JAX starts its backend and threads: the training scripts' XLA flags for the
# --precision asked for, and the host malloc tuning.
from vqvae_jax.cli import flags as _flags  # noqa: E402


def _early_args():
  """--precision, --stock-xla and --stock-malloc, read before JAX starts (the
  full parser below needs JAX-dependent tables)."""
  import argparse  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(add_help=False)
  p.add_argument('--precision')
  p.add_argument('--stock-xla', action='store_true')
  p.add_argument('--stock-malloc', action='store_true')
  return p.parse_known_args()[0]


_EARLY = _early_args()
if not _EARLY.stock_xla:
  _flags.set_xla_flags(_EARLY.precision)
MALLOC_TUNED = not _EARLY.stock_malloc and _flags.tune_malloc()

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

from benchmarks.machine import CpuSnap, compiled_flops, cpu_info  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from vqvae_jax import states
from vqvae_jax.models import layers, quantizer, vqvae  # noqa: E402
from vqvae_jax.train import vqvae as vqvae_training  # noqa: E402
from vqvae_jax.train.loop import AXIS, replicate  # noqa: E402

BATCH = 128
HIDDEN = 256
K = 512
LR = 2e-4
BETA = 1.0
SHAPES = {'28x28x1': (28, 1), '32x32x3': (32, 3)}
TORCH_BENCH = '/work/shared/bench/bench_torch.py'
TORCH_AUTOCAST_BENCH = os.path.join(_ROOT, 'benchmarks', 'torch_step.py')


def log(*a):
  print(*a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------
# JAX side.
# ----------------------------------------------------------------------------
class JaxTrain:
  """The project's train step for one input shape, compiled once.

  impls: layer formulation overrides ((kind, name) pairs, vqvae.VQVAE.impls);
  dtype: the model's compute dtype; batch: images per step."""

  def __init__(self, size, channels, impls=(), dtype=jnp.float32, batch=BATCH, seed=0):
    self.model = vqvae.VQVAE(channels=channels, hidden=HIDDEN, k=K, axis_name=AXIS,
                              dtype=dtype, impls=impls)
    state = states.create_train_state(jax.random.key(seed), self.model,
                                        (size, size, channels), LR)
    self.state = replicate(state, jax.local_devices()[:1])
    rng = np.random.default_rng(seed)
    self.images = jax.device_put(
        rng.integers(0, 256, (1, batch, size, size, channels), dtype=np.uint8))
    self.labels = jax.device_put(np.zeros((1, batch), np.int32))
    step = jax.pmap(functools.partial(vqvae_training.train_step, model=self.model, beta=BETA),
                    axis_name=AXIS, donate_argnums=(0,), devices=jax.local_devices()[:1])
    t0 = time.perf_counter()
    self.step = step.lower(self.state, self.images, self.labels).compile()
    self.compile_s = time.perf_counter() - t0
    self.flops = compiled_flops(self.step)
    t0 = time.perf_counter()
    self.run(1)
    self.first_step_s = time.perf_counter() - t0

  def run(self, n):
    """n steps, each timed; returns the per-step seconds."""
    times = []
    for _ in range(n):
      t0 = time.perf_counter()
      self.state, metrics = self.step(self.state, self.images, self.labels)
      jax.block_until_ready((self.state, metrics))
      times.append(time.perf_counter() - t0)
    self.last_loss = float(metrics['loss'][0])
    return times


# Dense peak TFLOP/s by device kind substring (first match; SXM figures for
# H100/H200): float32 on the vector units, tf32 and bfloat16 on tensor cores
# (None: no such tensor cores).
PEAK_TFLOPS = {
    'H200': {'float32': 67, 'tf32': 494.7, 'bfloat16': 989.4},
    'H100': {'float32': 67, 'tf32': 494.7, 'bfloat16': 989.4},
    'A100': {'float32': 19.5, 'tf32': 156, 'bfloat16': 312},
    'V100': {'float32': 15.7, 'tf32': None, 'bfloat16': None},
    'L40S': {'float32': 91.6, 'tf32': 183, 'bfloat16': 362},
    'L4': {'float32': 30.3, 'tf32': 60, 'bfloat16': 121},
    'A10': {'float32': 31.2, 'tf32': 62.5, 'bfloat16': 125},
    'T4': {'float32': 8.1, 'tf32': None, 'bfloat16': None},
}
# --precision -> (model compute dtype, jax_default_matmul_precision).
PRECISIONS = {'float32': (jnp.float32, 'float32'), 'tf32': (jnp.float32, 'tensorfloat32'),
              'bfloat16': (jnp.bfloat16, None)}


def _peak(device, precision):
  """Peak FLOP/s of `device` for `precision` (None if unknown)."""
  for name, peaks in PEAK_TFLOPS.items():
    if name in device.device_kind:
      return peaks[precision] * 1e12 if peaks[precision] else None
  return None


class JaxVQ:
  """vq_st + vq_losses forward/backward, and the assignment alone (z_e [128, 8, 8, 256])."""

  def __init__(self, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    self.z_e = jax.random.normal(k1, (BATCH, 8, 8, HIDDEN))
    self.codebook = jax.random.uniform(k2, (K, HIDDEN), minval=-1.0 / K, maxval=1.0 / K)
    self.up = jax.random.normal(k3, (BATCH, 8, 8, HIDDEN))

    def loss(z_e, codebook, up):
      z_q_st, idx = quantizer.vq_st(z_e, codebook)
      cb, cm = quantizer.vq_losses(z_e, codebook, idx)
      return jnp.sum(z_q_st * up) + cb + BETA * cm

    self.fwd_bwd = jax.jit(jax.grad(loss, (0, 1)))
    self.assign = jax.jit(quantizer.vq)

  def run(self, reps=10):
    out = {}
    for name, fn, args in (('fwd_bwd', self.fwd_bwd, (self.z_e, self.codebook, self.up)),
                           ('assign', self.assign, (self.z_e, self.codebook))):
      jax.block_until_ready(fn(*args))
      ts = []
      for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t0)
      out[name] = 1e3 * statistics.median(ts)
    return out


# ----------------------------------------------------------------------------
# PyTorch side.
# ----------------------------------------------------------------------------
def run_torch(python, threads, precision='float32', plan='full'):
  """One bench_torch.py run (float32; `plan` 'full': two full-batch warm-up
  steps and up to 10 timed ones, 'quick': one batch-16 warm-up step and 3), or
  for bfloat16 one torch_step.py run (torch.autocast(bfloat16));
  returns its JSON dict (or raises RuntimeError)."""
  if precision == 'bfloat16':
    cmd = [python, TORCH_AUTOCAST_BENCH, '--threads', str(threads)]
  else:
    cmd = [python, TORCH_BENCH, f'--{plan}', '--only', 'vqvae,vq', '--threads', str(threads)]
  p = subprocess.run(cmd, capture_output=True, text=True, check=False)
  lines = [ln for ln in p.stdout.splitlines() if ln.startswith('{')]
  if p.returncode != 0 or not lines:
    raise RuntimeError(f'{" ".join(cmd)} failed (rc {p.returncode}): {p.stderr[-2000:]}')
  return json.loads(lines[-1])


def parse_impl(spec):
  """'up=sub2_conv,down=reference' -> validated (kind, name) pairs (layers.check_impls)."""
  pairs = [item.partition('=')[::2] for item in filter(None, spec.split(','))]
  try:
    return layers.check_impls(pairs)
  except ValueError as e:
    raise SystemExit(f'--impl: {e}') from e


def _parse_args():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument('--torch-python', default=os.path.join(_ROOT, '.venv-torch', 'bin', 'python'),
                  help='python with torch installed (default: .venv-torch/bin/python)')
  ap.add_argument('--no-torch', action='store_true', help='time the JAX side only')
  ap.add_argument('--rounds', type=int, default=3)
  ap.add_argument('--torch-plan', default='full', choices=('full', 'quick'),
                  help="bench_torch.py's plan: full (2 full-batch warm-up steps, <= 10 timed; "
                       'default) or quick (1 batch-16 warm-up step, 3 timed)')
  ap.add_argument('--steps', type=int, default=3, help='timed JAX steps per shape and round')
  ap.add_argument('--shapes', default=','.join(SHAPES), help='comma-separated subset of ' +
                  ', '.join(SHAPES))
  ap.add_argument('--threads', type=int, default=2, help='PyTorch threads')
  ap.add_argument('--impl', default='', help='override the auto formulation of layer kinds '
                  f'({", ".join(layers.KINDS)}), e.g. up=sub2_conv')
  ap.add_argument('--precision', default='float32', choices=sorted(PRECISIONS),
                  help='float32 (default), tf32 or bfloat16; see the docstring')
  ap.add_argument('--batch', type=int, default=BATCH, help='images per step (default 128)')
  ap.add_argument('--stock-xla', action='store_true',
                  help="do not set this script's XLA flags (for comparison)")
  ap.add_argument('--stock-malloc', action='store_true',
                  help='leave glibc malloc as it is (see vqvae_jax.cli.flags.tune_malloc)')
  args = ap.parse_args()
  shapes = [s for s in args.shapes.split(',') if s]
  for s in shapes:
    if s not in SHAPES:
      ap.error(f'unknown shape {s!r}')
  if args.batch != BATCH and not args.no_torch:
    ap.error(f'--batch {args.batch}: the PyTorch side runs batch {BATCH}; add --no-torch')
  return args, shapes


def main():
  args, shapes = _parse_args()
  impls = parse_impl(args.impl)
  dtype, matmul_precision = PRECISIONS[args.precision]
  jax.config.update('jax_default_matmul_precision', matmul_precision)

  torch_error = None
  if not args.no_torch:
    if not os.path.exists(args.torch_python):
      torch_error = (f'PyTorch python {args.torch_python} not found: create it with '
                     '`python3 -m venv .venv-torch && .venv-torch/bin/pip install torch==2.13.0 '
                     'numpy`, or pass --torch-python, or --no-torch')
      log('WARNING:', torch_error)
    elif not os.path.exists(TORCH_BENCH):
      torch_error = f'{TORCH_BENCH} not found'
      log('WARNING:', torch_error)
  use_torch = not args.no_torch and torch_error is None

  whole = CpuSnap()
  t_start = time.perf_counter()
  trains = {}
  for s in shapes:
    size, channels = SHAPES[s]
    trains[s] = JaxTrain(size, channels, impls, dtype, args.batch)
    log(f'jax {s}: compile {trains[s].compile_s:.1f} s, first step {trains[s].first_step_s:.2f} s')
  vq = JaxVQ()

  jax_rounds = {s: [] for s in shapes}
  torch_rounds = {s: [] for s in shapes}
  jax_vq, torch_vq, torch_other, jax_other = [], [], [], []
  for r in range(args.rounds):
    snap = CpuSnap()
    for s in shapes:
      t = statistics.median(trains[s].run(args.steps))
      jax_rounds[s].append(args.batch / t)
      log(f'round {r + 1} jax   {s}: {args.batch / t:6.1f} img/s '
          f'(loss {trains[s].last_loss:.4f})')
    jax_vq.append(vq.run())
    jax_other.append(snap.other_frac())
    if use_torch:
      snap = CpuSnap()
      try:
        res = run_torch(args.torch_python, args.threads, args.precision, args.torch_plan)
      except RuntimeError as e:
        torch_error = str(e)
        log('WARNING: PyTorch run failed:', torch_error)
        use_torch = False
        continue
      torch_other.append(snap.other_frac())
      for s in shapes:
        torch_rounds[s].append(res['vqvae_train_imgs_per_s'][s])
        log(f'round {r + 1} torch {s}: {torch_rounds[s][-1]:6.1f} img/s')
      if res.get('vq_only_ms'):
        torch_vq.append({k: res['vq_only_ms'][k] for k in ('fwd_bwd', 'assign')})

  def med(v):
    return round(statistics.median(v), 2) if v else None

  out = {
      'bench': 'vqvae_jax_train', 'batch': args.batch, 'hidden': HIDDEN, 'k': K, 'lr': LR,
      'rounds': args.rounds, 'steps_per_round': args.steps,
      'jax_imgs_per_s': {s: med(jax_rounds[s]) for s in shapes},
      'torch_imgs_per_s': {s: med(torch_rounds[s]) for s in shapes} if torch_rounds[shapes[0]]
                          else None,
  }
  if out['torch_imgs_per_s']:
    per_round = {s: [round(j / t, 3) for j, t in zip(jax_rounds[s], torch_rounds[s])]
                 for s in shapes}
    out['ratio'] = {s: round(statistics.median(v), 3) for s, v in per_round.items()}
    out['ratio_per_round'] = per_round
  else:
    out['ratio'] = None
  out['torch_mode'] = ('torch.autocast(bfloat16) (benchmarks/torch_step.py)'
                       if args.precision == 'bfloat16' else f'float32 (bench_torch.py --{args.torch_plan})')
  out['compile_s'] = {s: round(trains[s].compile_s, 2) for s in shapes}
  device = jax.local_devices()[0]
  peak, fp32_peak = _peak(device, args.precision), _peak(device, 'float32')
  out['device'] = f'{device.platform}: {device.device_kind}'
  out['precision'] = args.precision
  out['matmul_precision'] = matmul_precision
  out['step_gflops'] = {s: round(trains[s].flops / 1e9, 2) if trains[s].flops else None
                        for s in shapes}
  out['fp32_peak_tflops'] = fp32_peak / 1e12 if fp32_peak else None
  out['peak_tflops'] = peak / 1e12 if peak else None
  out['peak_fraction'] = {
      s: round(trains[s].flops * statistics.median(jax_rounds[s]) / args.batch / peak, 4)
      if peak and trains[s].flops and jax_rounds[s] else None for s in shapes}
  out['vq_only_ms'] = {
      'jax': {k: med([v[k] for v in jax_vq]) for k in ('fwd_bwd', 'assign')},
      'torch': {k: med([v[k] for v in torch_vq]) for k in ('fwd_bwd', 'assign')} if torch_vq
               else None,
      'vectors': BATCH * 64, 'dim': HIDDEN, 'K': K,
  }
  out['jax_imgs_per_s_rounds'] = {s: [round(v, 1) for v in jax_rounds[s]] for s in shapes}
  if torch_vq:
    out['torch_imgs_per_s_rounds'] = {s: [round(v, 1) for v in torch_rounds[s]] for s in shapes}
  out['layer_impls'] = layers.effective_impls(impls, dtype=dtype)
  out['xla_flags'] = os.environ.get('XLA_FLAGS', '')
  out['malloc_tuned'] = bool(MALLOC_TUNED)
  out['jax'] = jax.__version__
  out['date'] = time.strftime('%Y-%m-%d')
  out['python'] = platform.python_version()
  out.update(cpu_info())
  out['cpus'] = os.cpu_count()
  out['other_procs_cpu_frac'] = {'whole_run': whole.other_frac(), 'jax_rounds': jax_other,
                                 'torch_rounds': torch_other}
  out['host_steal_cpu_frac'] = whole.steal_frac()
  out['torch_error'] = torch_error
  out['wall_s'] = round(time.perf_counter() - t_start, 1)
  print(json.dumps(out, separators=(',', ':')))


if __name__ == '__main__':
  main()
