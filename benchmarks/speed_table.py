"""The README's speed tables (markdown), from the benchmark JSON in benchmarks/results/.

    python benchmarks/speed_table.py --update README.md

One row per CPU kind and precision: `bench_train_*.json` (bench_train.py: the
VQ-VAE training step against PyTorch, float32 or torch.autocast(bfloat16)) and
`bench_sampling*.json` (bench_sampling.py: class-conditional sampling and the
prior's training step against PyTorch). Each row names the CPU (the JSON's
`cpu` and ISA fields; for JSON written before they were recorded, the CPU kind
in the file name), the JAX version, the date (the JSON's, else the date the
file was committed), the rounds and the largest share of the CPU other
processes took during a timed round (and, where recorded, the share of the CPUs'
time the hypervisor stole for other guests over the run).
"""
from __future__ import annotations

import glob
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_table import table_main  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')


def _cpu(d: dict, path: str) -> str:
  if d.get('cpu'):
    isa = '/'.join(k for k in ('avx2', 'avx512', 'amx') if d.get(k))
    family = f", family/model {d['cpu_family_model']}" if d.get('cpu_family_model') else ''
    return (f"{d['cpu']} ({d.get('cores') or d.get('cpus')} cores{', ' + isa if isa else ''}"
            f"{family})")
  kind = os.path.splitext(os.path.basename(path))[0].rsplit('_', 1)[-1]
  return f'{kind} (CPU not recorded in the JSON; kind from the file name)'


def _date(d: dict, path: str) -> str:
  if d.get('date'):
    return d['date']
  try:
    out = subprocess.run(['git', 'log', '-1', '--follow', '--diff-filter=AM', '--format=%cs',
                          '--', os.path.basename(path)],
                         cwd=os.path.dirname(path), capture_output=True, text=True, timeout=10,
                         check=False).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    out = ''
  return f'{out} (committed)' if out else 'not recorded'


def _other(d: dict) -> str:
  """Others' largest share in a timed round, and the host's steal over the run."""
  other = d.get('other_procs_cpu_frac')
  if isinstance(other, dict):
    rounds = (other.get('jax_rounds') or []) + (other.get('torch_rounds') or [])
    text = f'{100 * max(rounds):.1f}%' if rounds else 'not recorded'
  else:
    text = f'{100 * other:.1f}%' if isinstance(other, (int, float)) else 'not recorded'
  steal = d.get('host_steal_cpu_frac')
  return text + (f'; steal {100 * steal:.1f}%' if isinstance(steal, (int, float)) else '')


def _ratio_cell(jax_v, torch_v, ratio, fmt='{:.1f}') -> str:
  if jax_v is None:
    return '–'
  if torch_v is None:
    return fmt.format(jax_v)
  return f'{fmt.format(jax_v)} vs {fmt.format(torch_v)} = **{ratio:.2f}×**'


def _plan(full: bool) -> str:
  """How bench_torch.py timed PyTorch: 'full' warms up with two full-batch steps;
  'quick' (every JSON before 2026-12-03's --torch-plan) with one batch-16 step,
  which on the AVX-512 Xeon left PyTorch's first timed steps slower."""
  return 'full plan' if full else 'quick plan'


def train_rows(paths) -> list[str]:
  rows = []
  for path in paths:
    d = json.load(open(path, encoding='utf-8'))
    cells = []
    for s in ('28x28x1', '32x32x3'):
      jax_v = (d.get('jax_imgs_per_s') or {}).get(s)
      torch_v = (d.get('torch_imgs_per_s') or {}).get(s)
      ratio = (d.get('ratio') or {}).get(s)
      cells.append(_ratio_cell(jax_v, torch_v, ratio))
    if d.get('precision') == 'bfloat16':
      torch_mode = 'autocast(bfloat16)'
    else:
      torch_mode = f"float32, {_plan('--full' in (d.get('torch_mode') or ''))}"
    rows.append(f"| {_cpu(d, path)} | {d.get('precision', 'float32')} (PyTorch {torch_mode}) | "
                f"{cells[0]} | {cells[1]} | {d.get('rounds')} | {_other(d)} | "
                f"JAX {d.get('jax')}, {_date(d, path)} | `{os.path.basename(path)}` |")
  return rows


def sampling_rows(paths) -> list[str]:
  rows = []
  for path in paths:
    d = json.load(open(path, encoding='utf-8'))
    sample = '–'
    if d.get('jax_fast_s') is not None:
      sample = (f"{d['jax_fast_s']:.2f} s vs {d['torch_s']:.2f} s = "
                f"**{d['speedup_fast_vs_torch']:.1f}× faster**" if d.get('torch_s')
                else f"{d['jax_fast_s']:.2f} s")
    prior = d.get('prior_train_imgs_per_s') or {}
    cells = []
    for hw in ('7x7', '8x8'):
      j, t, r = ((prior.get(k) or {}).get(hw) for k in ('jax', 'torch', 'ratio'))
      cells.append(_ratio_cell(j, t, r) if j is not None else '–')
    load = d.get('loadavg_start_end')
    other = _other(d) if d.get('other_procs_cpu_frac') is not None else (
        f'load average {load[0]:.2f} → {load[1]:.2f}' if load else 'not recorded')
    plan = _plan((d.get('reference') or {}).get('plan') == 'full')
    rows.append(f"| {_cpu(d, path)} | {plan} | {sample} | {cells[0]} | {cells[1]} | "
                f"{d.get('rounds')} | "
                f"{other} | JAX {d.get('jax')}, "
                f"{_date(d, path)} | `{os.path.basename(path)}` |")
  return rows


def roofline_rows(paths) -> list[str]:
  """benchmarks/roofline.py: kernel rates against the rates the steps achieve."""
  rows = []
  for path in paths:
    d = json.load(open(path, encoding='utf-8'))
    jax_g, torch_g = d.get('jax_gflops') or {}, d.get('torch_gflops') or {}
    best = d.get('best_jax_dot_gflops')
    kernels = (f"{max(v for k, v in jax_g.items() if k != 'conv3x3_lax'):.0f} / "
               f"{jax_g.get('conv3x3_lax', float('nan')):.0f}")
    if torch_g:
      kernels += (f" (PyTorch {max(v for k, v in torch_g.items() if k != 'conv3x3'):.0f} / "
                  f"{torch_g.get('conv3x3', float('nan')):.0f})")
    cells = []
    for kind, shapes in (('vqvae_step', ('28x28x1', '32x32x3')), ('prior_step', ('7x7', '8x8'))):
      for s in shapes:
        r = (d.get(kind) or {}).get(s)
        cells.append('–' if not r else
                     f"{r['jax_step_gflops']:.0f} vs {r.get('torch_step_gflops', float('nan')):.0f}"
                     f" ({100 * r['jax_fraction_of_best_jax_dot']:.0f}% of {best:.0f})")
    rows.append(f"| {_cpu(d, path)} | {kernels} | {' | '.join(cells)} | {_other(d)} | "
                f"JAX {d.get('jax')}, {_date(d, path)} | `{os.path.basename(path)}` |")
  return rows


def _train_key(path):
  d = json.load(open(path, encoding='utf-8'))
  return (_cpu(d, path), d.get('precision') != 'float32', path)


def table(folder: str = RESULTS) -> str:
  train = sorted(glob.glob(os.path.join(folder, 'bench_train_*.json')), key=_train_key)
  sampling = sorted(glob.glob(os.path.join(folder, 'bench_sampling*.json')))
  lines = ['| CPU | precision | VQ-VAE step 28×28×1, img/s (vqvae-jax vs PyTorch) | '
           '32×32×3 | rounds | others\' CPU (max) | software, date | JSON |',
           '| --- | --- | --- | --- | --- | --- | --- | --- |'] + train_rows(train)
  lines += ['', '| CPU | PyTorch timed by | sampling 64 class-conditional 8×8 grids | '
                'prior train step 7×7, img/s | 8×8 | rounds | others\' CPU (max) | '
                'software, date | JSON |',
            '| --- | --- | --- | --- | --- | --- | --- | --- | --- |'] + sampling_rows(sampling)
  roofline = sorted(glob.glob(os.path.join(folder, 'roofline_*.json')))
  if roofline:
    lines += ['', '| CPU | float32 GFLOP/s: best dot / 3x3 conv (XLA) | VQ-VAE step 28×28×1, '
                  'GFLOP/s (vqvae-jax vs PyTorch; vqvae-jax as % of the best XLA kernel) | '
                  '32×32×3 | prior step 7×7 | 8×8 | others\' CPU | software, date | JSON |',
              '| --- | --- | --- | --- | --- | --- | --- | --- | --- |'] + roofline_rows(roofline)
  lines += ['', 'Batch 128, hidden 256, K 512 (prior: 15 gated layers, width 64). PyTorch '
                "timed by bench_torch.py's full plan (two full-batch warm-up steps, up to 10 "
                'timed) or, in JSON written before 2026-12-03, its quick plan (one batch-16 '
                'warm-up step, 3 timed), which can time PyTorch low (see below); on the AVX-512 '
                'Xeon both are in the table. Roofline rows (`benchmarks/roofline.py`): both '
                "libraries' steps charged XLA's FLOP count of the step, at the img/s of the "
                'bench_train / bench_sampling JSON it names. Generated by '
                '`benchmarks/speed_table.py` from the JSON named in each row.']
  return '\n'.join(lines)


def main(argv=None):
  table_main(__doc__, table, RESULTS, 'speed', argv)


if __name__ == '__main__':
  main()
