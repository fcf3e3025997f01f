"""Recipe search on Fashion-MNIST: named recipes, one step budget, test-split quality.

    python3 benchmarks/recipe_search.py --steps 2000                   # every recipe
    python3 benchmarks/recipe_search.py --steps 2000 --recipes cpu lr1e-3 batch32
    python3 benchmarks/recipe_search.py --table                        # the README table

Each recipe is a set of config overrides on `configs/fashion_mnist.py:cpu`
(`RECIPES` below; `--set key=value` adds overrides to every recipe, e.g. a tiny
model for a smoke test). A recipe trains for `--steps` steps (its learning-rate
schedule decays over them) into `runs/recipes/<name>/<steps>-steps/`, is
evaluated on the test split by `vqvae_jax.evaluation.evaluate` (the checkpoint
that is best on validation), and one JSON line is appended to
`benchmarks/results/recipes.jsonl` (the file is rewritten atomically, so a crash
never leaves a torn line). Rerunning skips the recipes already in the file for
the same steps and overrides; a killed recipe resumes from its latest checkpoint
(`wall_s` then counts only the rerun; `resumed_from_step` says from where).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from vqvae_jax.cli import flags  # pylint: disable=wrong-import-position
from vqvae_jax.errors import cli  # pylint: disable=wrong-import-position

BASE = 'fashion_mnist:cpu'
# The base's keys a row records (`base_values`): a row measured on another base than
# today's (e.g. before :cpu moved to lr 1e-3, beta 0.1, EMA 0.95) says so in the table.
BASE_KEYS = ('hidden_size', 'batch_size', 'lr', 'lr_schedule', 'warmup_steps', 'beta',
             'ema_decay', 'restart_after', 'codebook', 'codebook_init')
RECIPES = {
    'cpu': {},
    'lr5e-4': {'lr': 5e-4},
    'lr1e-3': {'lr': 1e-3},
    'constant-lr': {'lr_schedule': 'constant', 'warmup_steps': 0},
    'linear-decay': {'lr_schedule': 'linear'},
    'batch32': {'batch_size': 32},
    'batch64': {'batch_size': 64},
    'batch128': {'batch_size': 128},
    'hidden256': {'hidden_size': 256},
    'beta0.25': {'beta': 0.25},
    'ema-decay0.95': {'ema_decay': 0.95},
    'restart5': {'restart_after': 5},
    'restart100': {'restart_after': 100},
    'kmeans-init': {'codebook_init': 'kmeans'},
    'clip1': {'grad_clip': 1.0},
    'wd1e-4': {'weight_decay': 1e-4},
    'paper-codebook': {'codebook': 'loss', 'codebook_init': 'uniform', 'restart_after': 0},
    # combinations of the single changes that won their screens (2026-12-04)
    'beta0.25-lr1e-3': {'beta': 0.25, 'lr': 1e-3},
    'beta0.25-ema0.95': {'beta': 0.25, 'ema_decay': 0.95},
    'beta0.25-lr1e-3-ema0.95': {'beta': 0.25, 'lr': 1e-3, 'ema_decay': 0.95},
    'beta0.1': {'beta': 0.1},
    'lr1.5e-3': {'lr': 1.5e-3},
    'beta0.1-lr1e-3-ema0.95': {'beta': 0.1, 'lr': 1e-3, 'ema_decay': 0.95},
    'beta0.05-lr1e-3-ema0.95': {'beta': 0.05, 'lr': 1e-3, 'ema_decay': 0.95},
    'beta0.1-lr1.5e-3-ema0.95': {'beta': 0.1, 'lr': 1.5e-3, 'ema_decay': 0.95},
    'beta0.1-lr1e-3-ema0.9': {'beta': 0.1, 'lr': 1e-3, 'ema_decay': 0.9},
}


def _base_of(config) -> dict:
  """The BASE_KEYS values of a (base) config."""
  return {k: config[k] for k in BASE_KEYS}


def _hardware() -> str:
  model = ''
  try:
    with open('/proc/cpuinfo') as f:
      model = next((l.split(':', 1)[1].strip() for l in f if l.startswith('model name')), '')
  except OSError:
    pass
  return f'{os.cpu_count()} CPU cores ({model or "unknown CPU"})'


def _parse_sets(pairs) -> dict:
  out = {}
  for pair in pairs or ():
    key, sep, value = pair.partition('=')
    if not sep:
      raise SystemExit(f'error: --set takes key=value, got {pair!r}')
    out[key.strip()] = value.strip()
  return out


def _finished(rows, name, steps, overrides) -> bool:
  return any(r.get('recipe') == name and r.get('steps') == steps and
             r.get('overrides') == overrides for r in rows)


def run_recipe(name: str, overrides: dict, steps: int, root: str, data_folder,
               extra=()) -> dict:
  """Trains (or resumes) one recipe and evaluates it on the test split; one row.

  extra: the names of the --set overrides, which name the run folder too (a
  seed repeat trains beside the first run, not over it)."""
  from vqvae_jax import evaluation  # pylint: disable=g-import-not-at-top
  from vqvae_jax.train import vqvae as vqvae_training  # pylint: disable=g-import-not-at-top
  from vqvae_jax.cli.config_files import load_config, override  # pylint: disable=g-import-not-at-top
  config = load_config(BASE)
  base = _base_of(config)
  for key, value in overrides.items():
    override(config, key, value)
  override(config, 'max_steps', steps)
  override(config, 'progress', False)
  if data_folder:
    override(config, 'data_folder', data_folder)
  workdir = os.path.join(root, name, f'{steps}-steps' + ''.join(
      f'_{k}={overrides[k]}' for k in sorted(extra)))
  latest = _latest_step(workdir)
  from benchmarks.machine import CpuSnap  # pylint: disable=g-import-not-at-top
  start, snap = time.time(), CpuSnap()
  summary = vqvae_training.train_vqvae(config, workdir)
  wall, others = time.time() - start, snap.other_frac()
  if summary['step'] < steps:
    # SIGTERM / Ctrl-C: the trainer saved a checkpoint; no row, so a rerun resumes.
    raise SystemExit(f'{name}: stopped at step {summary["step"]} of {steps}; rerun to '
                     f'resume from its checkpoint in {workdir}')
  result = evaluation.evaluate(workdir, split='test', data_folder=data_folder or None)
  return {'recipe': name, 'overrides': overrides, 'steps': steps, 'base': BASE,
          'base_values': base,
          'batch_size': config.batch_size, 'final_step': summary['step'],
          'wall_s': round(wall, 1), 'other_procs_cpu_frac': others,
          'resumed_from_step': latest,
          'eval_step': result['step'], 'test_psnr': result['psnr'], 'test_ssim': result['ssim'],
          'codes_used': result['codes_used'], 'k': result['k'], 'usage': result['usage'],
          'perplexity': result['perplexity'], 'hardware': _hardware(), 'output': workdir,
          'date': time.strftime('%Y-%m-%d')}


def _latest_step(workdir):
  folder = os.path.join(workdir, 'checkpoints')
  steps = [int(d) for d in os.listdir(folder) if d.isdigit()] if os.path.isdir(folder) else []
  return max(steps) if steps else None


def _append(path: str, row: dict) -> None:
  from vqvae_jax import fileio  # pylint: disable=g-import-not-at-top
  rows = fileio.read_jsonl(path) + [row]
  fileio.atomic_write(path, ''.join(json.dumps(r, sort_keys=True) + '\n' for r in rows))


def _others(row) -> str:
  frac = row.get('other_procs_cpu_frac')
  return '' if frac is None else f', others\' CPU {100 * frac:.0f}%'


def _base_diff(row, today) -> dict:
  """The keys in which the row's base differed from today's ({} when the same)."""
  then = row.get('base_values') or {}
  return {k: v for k, v in then.items() if k in today and today[k] != v}


MARKS = '†‡§¶'


def table(rows, today=None) -> str:
  """Markdown: recipe, steps, batch, images seen, wall time, test PSNR, codes used,
  hardware (one row per result, in the order measured). today: BASE's values now
  (default: loaded); rows run on an earlier base get a mark, explained below."""
  if today is None:
    from vqvae_jax.cli.config_files import load_config  # pylint: disable=g-import-not-at-top
    today = _base_of(load_config(BASE))
  lines = ['| recipe | steps | batch | images seen | wall time | test PSNR (dB) | codes used '
           '| hardware |', '| --- | --- | --- | --- | --- | --- | --- | --- |']
  bases = []
  for r in rows:
    diff = _base_diff(r, today)
    if diff and diff not in bases:
      bases.append(diff)
    mark = MARKS[bases.index(diff) % len(MARKS)] if diff else ''
    wall = f'{r["wall_s"] / 60:.1f} min' + (' (resumed)' if r.get('resumed_from_step') else '')
    lines.append(f'| {r["recipe"]}{mark} ({", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or BASE}) '
                 f'| {r["steps"]} | {r["batch_size"]} | {r["steps"] * r["batch_size"]:,} | {wall} '
                 f'| {r["test_psnr"]:.2f} | {r["codes_used"]} / {r["k"]} | {r.get("hardware", "")}'
                 f'{", " + r["date"] if r.get("date") else ""}{_others(r)} |')
  for i, diff in enumerate(bases):
    lines.append(f'\n{MARKS[i % len(MARKS)]} on an earlier `{BASE}`: '
                 + ', '.join(f'{k}={v}' for k, v in diff.items())
                 + ' (today: ' + ', '.join(f'{k}={today[k]}' for k in diff)
                 + '); the overrides in the row apply on top.')
  return '\n'.join(lines)


def search_flags(p, what: str, runs: str, results: str, marker: str) -> None:
  """The flags a search script shares: --set, --root (runs/<runs>), --results
  (benchmarks/results/<results>), --table and --update (README markers `marker`)."""
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help=f'extra config overrides for every {what}')
  p.add_argument('--root', default=os.path.join(REPO, 'runs', runs))
  p.add_argument('--results', default=os.path.join(REPO, 'benchmarks', 'results', results))
  p.add_argument('--table', action='store_true', help='print the table of --results and exit')
  p.add_argument('--update', default=None, metavar='README',
                 help=f"with --table: write it between README's <!-- table:{marker} --> markers")


def start(args, make_table, marker: str) -> bool:
  """Host malloc and XLA flags; with --table, prints make_table(rows of --results)
  (and with --update writes it into that file's `marker` table): True then."""
  flags.tune_malloc()
  flags.set_xla_flags()
  if not args.table:
    return False
  from vqvae_jax import fileio  # pylint: disable=g-import-not-at-top
  text = make_table(fileio.read_jsonl(args.results))
  print(text)
  if args.update:
    import results_table  # pylint: disable=g-import-not-at-top
    results_table.update(args.update, marker, text)
  return True


@cli
def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--steps', type=int, default=None, help='training steps per recipe')
  p.add_argument('--recipes', nargs='+', default=None, help=f'default: all of {list(RECIPES)}')
  search_flags(p, 'recipe', 'recipes', 'recipes.jsonl', 'recipes')
  p.add_argument('--data-folder', default=None)
  args = p.parse_args(argv)
  if start(args, table, 'recipes'):
    return
  from vqvae_jax import fileio  # pylint: disable=g-import-not-at-top
  if not args.steps or args.steps < 1:
    raise SystemExit('error: --steps N (a positive step budget) is required')
  names = args.recipes or list(RECIPES)
  unknown = [n for n in names if n not in RECIPES]
  if unknown:
    raise SystemExit(f'error: unknown recipes {unknown} (known: {", ".join(RECIPES)})')
  extra = _parse_sets(args.set)
  for name in names:
    overrides = dict(RECIPES[name], **extra)
    if _finished(fileio.read_jsonl(args.results), name, args.steps, overrides):
      print(f'{name}: done already (in {args.results})', file=sys.stderr)
      continue
    row = run_recipe(name, overrides, args.steps, args.root, args.data_folder, extra)
    _append(args.results, row)
    print(json.dumps(row, sort_keys=True), flush=True)


if __name__ == '__main__':
  main()
