"""Prior recipe search: named variants of `configs/prior.py:cpu` on one VQ-VAE's codes.

    python3 benchmarks/prior_search.py --model pretrained/fashion-mnist       # every variant
    python3 benchmarks/prior_search.py --model pretrained/fashion-mnist --variants cpu lr2e-3
    python3 benchmarks/prior_search.py --table --update benchmarks/README.md

Each variant is a set of config overrides on `configs/prior.py:cpu` (`VARIANTS`
below; `--set key=value` adds overrides to every variant). It trains for
`--steps` steps (default: the :cpu budget) on the codes of `--model` (a VQ-VAE
run folder or a `pretrained/` one) into `runs/prior-search/<name>/<steps>-steps/`,
is evaluated on the test split by `vqvae_jax.evaluation.evaluate` (test NLL in
bits per code against the unigram entropy of the same codes, and class
consistency of temperature-1 samples), and one JSON line is appended to
`benchmarks/results/prior_recipes.jsonl` (rewritten atomically). Rerunning skips
the variants already in the file for the same model, steps and overrides; a
killed one resumes from its latest checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'benchmarks'))

from vqvae_jax.errors import cli  # pylint: disable=wrong-import-position
import recipe_search  # pylint: disable=wrong-import-position  (its row-file helpers)

BASE = 'prior:cpu'
VARIANTS = {
    'cpu': {},
    'lr2e-3': {'lr': 2e-3},
    'lr4e-3': {'lr': 4e-3},
    'lr5e-4': {'lr': 5e-4},
    'batch64': {'batch_size': 64},
}


def run_variant(name: str, overrides: dict, model: str, steps: int | None, root: str) -> dict:
  """Trains (or resumes) one variant and evaluates it on the test split; one row."""
  from vqvae_jax import evaluation  # pylint: disable=g-import-not-at-top
  from vqvae_jax.cli.config_files import load_config, override  # pylint: disable=g-import-not-at-top
  from vqvae_jax.train import prior as prior_training  # pylint: disable=g-import-not-at-top
  from benchmarks.machine import CpuSnap, cpu_info  # pylint: disable=g-import-not-at-top
  config = load_config(BASE)
  for key, value in overrides.items():
    override(config, key, value)
  steps = steps or config.max_steps
  override(config, 'max_steps', steps)
  override(config, 'model', model)
  override(config, 'progress', False)
  workdir = os.path.join(root, name, f'{steps}-steps')
  latest = recipe_search._latest_step(workdir)  # pylint: disable=protected-access
  start, snap = time.time(), CpuSnap()
  summary = prior_training.train_prior(config, workdir)
  wall, others = time.time() - start, snap.other_frac()
  if summary['step'] < steps:
    raise SystemExit(f'{name}: stopped at step {summary["step"]} of {steps}; rerun to '
                     f'resume from its checkpoint in {workdir}')
  result = evaluation.evaluate(model, split='test', prior_dir=workdir)
  prior, cc = result['prior'], result.get('class_consistency') or {}
  machine = cpu_info()
  return {'variant': name, 'overrides': overrides, 'model': model, 'steps': steps,
          'base': BASE, 'lr': config.lr, 'batch_size': config.batch_size,
          'hidden': config.hidden_size_prior, 'layers': config.num_layers,
          'wall_s': round(wall, 1), 'other_procs_cpu_frac': others, 'resumed_from_step': latest,
          'test_bits_per_code': prior['bits_per_code'],
          'unigram_bits_per_code': prior['unigram_bits_per_code'],
          'class_consistency': cc.get('value'),
          'classifier_test_accuracy': cc.get('classifier_test_accuracy'),
          'hardware': f"{machine['cores']} CPU cores ({machine['cpu']})",
          'output': workdir, 'date': time.strftime('%Y-%m-%d')}


def table(rows) -> str:
  """Markdown, one row per result in the order measured."""
  lines = ['| variant | model | steps | batch | lr | wall time | test bits/code (unigram) | '
           'class consistency | hardware |',
           '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
  for r in rows:
    wall = f'{r["wall_s"] / 60:.1f} min' + (' (resumed)' if r.get('resumed_from_step') else '')
    cc = '–' if r.get('class_consistency') is None else f'{100 * r["class_consistency"]:.1f}%'
    over = ', '.join(f'{k}={v}' for k, v in r['overrides'].items()) or BASE
    lines.append(f'| {r["variant"]} ({over}) | `{r["model"]}` | {r["steps"]} | {r["batch_size"]} '
                 f'| {r["lr"]:g} | {wall} | {r["test_bits_per_code"]:.3f} ({r["unigram_bits_per_code"]:.3f}) '
                 f'| {cc} | {r["hardware"]}, {r["date"]}{recipe_search._others(r)} |')  # pylint: disable=protected-access
  return '\n'.join(lines)


@cli
def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--model', default=os.path.join('pretrained', 'fashion-mnist'),
                 help='the VQ-VAE folder whose codes the priors fit')
  p.add_argument('--steps', type=int, default=None, help="default: the :cpu config's")
  p.add_argument('--variants', nargs='+', default=None, help=f'default: all of {list(VARIANTS)}')
  recipe_search.search_flags(p, 'variant', 'prior-search', 'prior_recipes.jsonl',
                             'prior-recipes')
  args = p.parse_args(argv)
  if recipe_search.start(args, table, 'prior-recipes'):
    return
  from vqvae_jax import fileio  # pylint: disable=g-import-not-at-top
  if args.steps is not None and args.steps < 1:
    raise SystemExit('error: --steps must be positive')
  names = args.variants or list(VARIANTS)
  unknown = [n for n in names if n not in VARIANTS]
  if unknown:
    raise SystemExit(f'error: unknown variants {unknown} (known: {", ".join(VARIANTS)})')
  extra = recipe_search._parse_sets(args.set)  # pylint: disable=protected-access
  for name in names:
    overrides = dict(VARIANTS[name], **extra)
    done = [r for r in fileio.read_jsonl(args.results) if r.get('model') == args.model]
    if any(r.get('variant') == name and r.get('overrides') == overrides and
           (args.steps is None or r.get('steps') == args.steps) for r in done):
      print(f'{name}: done already (in {args.results})', file=sys.stderr)
      continue
    row = run_variant(name, overrides, args.model, args.steps, args.root)
    recipe_search._append(args.results, row)  # pylint: disable=protected-access
    print(json.dumps(row, sort_keys=True), flush=True)


if __name__ == '__main__':
  main()
