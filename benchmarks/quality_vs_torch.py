"""Test PSNR per step and per hour: vqvae-jax against the PyTorch reference.

Trains the same recipe, pytorch-vqvae's (`configs/common.paper`: codebook loss,
U(-1/K, 1/K) codebook, beta 1, Adam 2e-4 constant, hidden 256, K 512, batch 128;
--hidden to change), on real Fashion-MNIST with this project's train step and with the
reference architecture of ../shared/bench/torch_ref.py (the PyTorch training
loop is this file's `torch_worker`, a subprocess in the torch venv; its residual
block as vqvae-jax's, x + F(relu(x)), unless --torch-relu-skip asks for
pytorch-vqvae's relu(x) + F(relu(x))), both on the
same batches in the same order, and evaluates both on the whole test split with
the same metric (`evaluation.psnr`: images in [0, 1], mean of per-image PSNR):

  (a) same steps:  both after --steps steps;
  (b) same budget: both after --budget-s seconds of training.
The two train in alternating slices of --slice-s seconds (PyTorch, JAX,
PyTorch, ...), so that both see the same drift of the machine's speed (these
VMs drift by 10-30% within minutes). Clocks count training only (JAX's
compilation included, also reported apart as `jax_first_step_s`) and stop
while evaluating. Prints ONE JSON line (progress on stderr):

    python3 benchmarks/quality_vs_torch.py                       # ~25 min
    python3 benchmarks/quality_vs_torch.py --budget-s 120 --steps 50 --hidden 128   # a look

The reference needs a venv with torch (see ../shared/bench/README.md):
    python3 -m venv .venv-torch && .venv-torch/bin/pip install torch==2.13.0 numpy
Do not run anything else meanwhile: (b) is a wall-clock comparison.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np  # the torch venv has numpy too

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(os.path.dirname(_ROOT), 'shared', 'bench', 'torch_ref.py')


def _log(*a):
  print(*a, file=sys.stderr, flush=True)


def batch_order(n: int, batch: int, seed: int):
  """Batch index arrays, epoch after epoch: a fresh permutation of range(n) per
  epoch from numpy's default_rng(seed), the last partial batch dropped. Both
  trainers draw their batches from this one generator."""
  rng = np.random.default_rng(seed)
  while True:
    perm = rng.permutation(n)
    for i in range(0, n - batch + 1, batch):
      yield perm[i:i + batch]


# ----------------------------------------------------------------------------
# PyTorch side: `python quality_vs_torch.py --torch-worker DIR ...` in the torch
# venv (numpy and torch only). Reads one JSON command a line on stdin, answers
# one JSON line on stdout; images come from .npy files in DIR.
# ----------------------------------------------------------------------------
def torch_worker(folder: str, hidden: int, batch: int, seed: int, threads: int,
                 relu_skip: bool = False) -> None:
  import torch
  sys.path.insert(0, os.path.dirname(REFERENCE))
  import torch_ref  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(threads)
  torch.manual_seed(seed)
  train = np.load(os.path.join(folder, 'train.npy'), mmap_mode='r')  # [N, H, W, C] uint8
  test = np.load(os.path.join(folder, 'test.npy'), mmap_mode='r')
  to_x = lambda u8: torch.from_numpy(  # noqa: E731  [b, H, W, C] uint8 -> [b, C, H, W] in [-1, 1]
      np.ascontiguousarray(u8.transpose(0, 3, 1, 2)).astype(np.float32) / 127.5 - 1.0)
  model = torch_ref.VQVAE(train.shape[-1], hidden, 512, relu_skip=relu_skip)
  opt = torch_ref.make_vqvae_optimizer(model)
  order = batch_order(len(train), batch, seed)
  steps, clock = 0, 0.0
  for line in sys.stdin:
    cmd = json.loads(line)
    if cmd['op'] == 'train':  # for `seconds`, or until step `until`
      model.train()
      t0 = time.perf_counter()
      while time.perf_counter() - t0 < cmd['seconds'] and steps != cmd.get('until'):
        torch_ref.vqvae_train_step(model, opt, to_x(train[next(order)]))
        steps += 1
      clock += time.perf_counter() - t0
      reply = {'steps': steps, 'train_s': clock}
    elif cmd['op'] == 'reconstruct':  # the test split, [0, 1], to DIR/cmd['file']
      model.eval()
      out = np.empty(test.shape, np.float32)
      with torch.no_grad():
        for i in range(0, len(test), 500):
          rec = model(to_x(test[i:i + 500]))[0]
          out[i:i + 500] = (rec.numpy().transpose(0, 2, 3, 1) + 1.0) / 2.0
      np.save(os.path.join(folder, cmd['file']), out)
      reply = {'file': cmd['file']}
    else:
      break
    print(json.dumps(dict(reply, torch=torch.__version__, threads=torch.get_num_threads())),
          flush=True)


class _Torch:
  """The worker subprocess, driven over a pipe."""

  def __init__(self, args, folder):
    cmd = [args.torch_python, os.path.abspath(__file__), '--torch-worker', folder,
           '--hidden', str(args.hidden), '--batch', str(args.batch), '--seed', str(args.seed),
           '--threads', str(args.threads)] + (['--torch-relu-skip'] if args.torch_relu_skip else [])
    self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    self.folder, self.steps, self.clock, self.info = folder, 0, 0.0, {}

  def _ask(self, **cmd):
    self.proc.stdin.write(json.dumps(cmd) + '\n')
    self.proc.stdin.flush()
    line = self.proc.stdout.readline()
    if not line:
      raise SystemExit(f'error: the torch worker stopped (exit {self.proc.wait()})')
    reply = json.loads(line)
    self.info = {'version': reply['torch'], 'threads': reply['threads']}
    return reply

  def train(self, seconds, until=None):
    reply = self._ask(op='train', seconds=seconds, until=until)
    self.steps, self.clock = reply['steps'], reply['train_s']

  def reconstruct(self, tag):
    file = self._ask(op='reconstruct', file=f'torch_{tag}.npy')['file']
    return np.load(os.path.join(self.folder, file))

  def close(self):
    self.proc.stdin.close()  # the worker's loop ends
    self.proc.wait()


# ----------------------------------------------------------------------------
# JAX side and the driver.
# ----------------------------------------------------------------------------
class _Jax:
  """This project's train step (pmap over one device, as train_vqvae.py) on the
  same batches; the same interface as _Torch."""

  def __init__(self, args, train_ds, test_ds):
    # pylint: disable=import-outside-toplevel
    import jax

    from vqvae_jax import states
    from vqvae_jax.models import vqvae
    from vqvae_jax.train import vqvae as vqvae_training
    from vqvae_jax.train.loop import AXIS, replicate
    self.jax = jax
    self.model = vqvae.VQVAE(channels=train_ds.image_shape[-1], hidden=args.hidden, k=512,
                             axis_name=AXIS)
    devices = jax.local_devices()[:1]
    self.state = replicate(states.create_train_state(
        jax.random.key(args.seed), self.model, train_ds.image_shape, 2e-4, codebook='loss'),
        devices)
    self.step = jax.pmap(functools.partial(vqvae_training.train_step, model=self.model,
                                           beta=1.0),
                         axis_name=AXIS, donate_argnums=(0,), devices=devices)
    self.labels = np.zeros((1, args.batch), np.int32)
    self.order = batch_order(len(train_ds), args.batch, args.seed)
    self.train_ds, self.test_ds = train_ds, test_ds
    self.steps, self.clock, self.first_step_s = 0, 0.0, None

  def train(self, seconds, until=None):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds and self.steps != until:
      self.state, metrics = self.step(self.state, self.train_ds.images[next(self.order)][None],
                                      self.labels)
      self.jax.block_until_ready(metrics['loss'])
      self.steps += 1
      if self.first_step_s is None:
        self.first_step_s = time.perf_counter() - t0
    self.clock += time.perf_counter() - t0

  def metrics(self):
    from vqvae_jax import evaluation  # pylint: disable=import-outside-toplevel
    from vqvae_jax.train.loop import unreplicate  # pylint: disable=import-outside-toplevel
    variables = {'params': unreplicate(self.state.params),
                 'batch_stats': unreplicate(self.state.batch_stats)}
    return evaluation.reconstruction_metrics(self.model, variables, self.test_ds)[0]


def _race(args, sides, evaluate):
  """Alternating slices until every side has its (a) and (b) evaluation.

  sides: {name: trainer}; evaluate(name) -> metrics dict. Returns
  {name: {'a': ..., 'b': ...}}, each with the side's steps and clock."""
  done = {name: {} for name in sides}
  while any(len(d) < 2 for d in done.values()):
    for name, side in sides.items():
      got = done[name]
      if len(got) == 2:
        continue
      left = args.budget_s - side.clock
      side.train(min(args.slice_s, left) if left > 0 else args.slice_s,
                 until=None if 'a' in got else args.steps)
      here = None
      if 'a' not in got and side.steps == args.steps:
        here = got['a'] = dict(evaluate(name), steps=side.steps, train_s=side.clock)
      if 'b' not in got and side.clock >= args.budget_s:
        got['b'] = here or dict(evaluate(name), steps=side.steps, train_s=side.clock)
      _log(f'{name}: {side.steps} steps, {side.clock:.0f} s'
           + ''.join(f', ({k}) {v["psnr"]:.3f} dB' for k, v in got.items()))
  return done


def main(argv=None):  # pylint: disable=too-many-locals
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument('--budget-s', type=float, default=600.0,
                  help='(b): training seconds for each side')
  ap.add_argument('--steps', type=int, default=400, help='(a): steps for each side')
  ap.add_argument('--slice-s', type=float, default=60.0,
                  help='seconds each side trains before the other takes its turn')
  ap.add_argument('--hidden', type=int, default=256)
  ap.add_argument('--batch', type=int, default=128)
  ap.add_argument('--seed', type=int, default=0)
  ap.add_argument('--threads', type=int, default=2, help='torch threads')
  ap.add_argument('--data-folder', default=None, help='Fashion-MNIST IDX files')
  ap.add_argument('--torch-python', default=os.path.join(_ROOT, '.venv-torch', 'bin', 'python'))
  ap.add_argument('--torch-relu-skip', action='store_true',
                  help="the reference's relu_skip=True residual block, relu(x) + F(relu(x)) "
                       "(pytorch-vqvae's in-place ReLU); default: x + F(relu(x)), the "
                       "paper's block and vqvae-jax's")
  ap.add_argument('--torch-worker', metavar='DIR', help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  if args.torch_worker:
    return torch_worker(args.torch_worker, args.hidden, args.batch, args.seed, args.threads,
                        args.torch_relu_skip)
  for path in (args.torch_python, REFERENCE):
    if not os.path.exists(path):
      raise SystemExit(f'error: {path} not found (see this script\'s docstring)')

  sys.path.insert(0, _ROOT)
  from vqvae_jax.cli.flags import set_xla_flags, tune_malloc
  set_xla_flags()  # as train_vqvae.py does, before JAX starts
  malloc_tuned = tune_malloc()
  # pylint: disable=import-outside-toplevel
  import jax

  from benchmarks.machine import CpuSnap, runtime_info
  from vqvae_jax import data, evaluation

  train_ds = data.load('fashion-mnist', 'train', args.data_folder)
  test_ds = data.load('fashion-mnist', 'test', args.data_folder)
  t_start, load0, snap = time.perf_counter(), os.getloadavg(), CpuSnap()
  x01 = test_ds.images.astype(np.float32) / 255.0
  with tempfile.TemporaryDirectory() as folder:
    np.save(os.path.join(folder, 'train.npy'), train_ds.images)
    np.save(os.path.join(folder, 'test.npy'), test_ds.images)
    sides = {'torch': _Torch(args, folder), 'jax': _Jax(args, train_ds, test_ds)}

    def evaluate(name):
      if name == 'jax':
        return sides['jax'].metrics()
      recon = np.clip(sides['torch'].reconstruct(sides['torch'].steps), 0.0, 1.0)
      return {'psnr': float(np.mean(np.asarray(evaluation.psnr(x01, recon)))),
              'ssim': float(np.mean(np.asarray(evaluation.ssim(x01, recon))))}

    done = _race(args, sides, evaluate)
    sides['torch'].close()
  keep = ('steps', 'train_s', 'psnr', 'ssim', 'codes_used', 'perplexity')
  j, t = done['jax'], done['torch']
  out = {
      'bench': 'quality_vs_torch', 'dataset': 'fashion-mnist', 'recipe': 'paper',
      'hidden': args.hidden, 'k': 512, 'batch': args.batch, 'seed': args.seed,
      'budget_s': args.budget_s,
      'slice_s': args.slice_s, 'test_images': len(test_ds),
      'same_steps': {'steps': args.steps, 'jax_psnr': j['a']['psnr'],
                     'torch_psnr': t['a']['psnr'], 'delta_db': j['a']['psnr'] - t['a']['psnr'],
                     'jax_train_s': j['a']['train_s'], 'torch_train_s': t['a']['train_s']},
      'same_budget': {'jax_steps': j['b']['steps'], 'torch_steps': t['b']['steps'],
                      'jax_psnr': j['b']['psnr'], 'torch_psnr': t['b']['psnr'],
                      'delta_db': j['b']['psnr'] - t['b']['psnr']},
      'jax_runs': {k: {m: v.get(m) for m in keep} for k, v in j.items()},
      'torch_runs': {k: {m: v.get(m) for m in keep} for k, v in t.items()},
      'torch': dict(sides['torch'].info, relu_skip=args.torch_relu_skip),
      'jax_first_step_s': sides['jax'].first_step_s, **runtime_info(),
      'backend': jax.default_backend(), 'malloc_tuned': bool(malloc_tuned),
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'other_procs_cpu_frac': snap.other_frac(),
      'loadavg_start_end': [load0[0], os.getloadavg()[0]],
      'wall_s': time.perf_counter() - t_start}
  print(json.dumps(out, separators=(',', ':')))
  return None


if __name__ == '__main__':
  main()
