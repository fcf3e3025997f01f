"""Prints the README's results table (markdown) from evaluation JSON files.

    python benchmarks/results_table.py benchmarks/results/cpu-recipes --update README.md

Reads every `<name>.eval.json` in the folder (written by `python -m vqvae_jax
evaluate`) and, if present, `<name>.train.json` beside it (budget, wall time and
hardware, written by benchmarks/run_results.sh). One row per run: the paper's
codebook first, then the others by name.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

COLUMNS = ('config', 'steps', 'hardware', 'train wall time', 'test MSE [-1, 1]',
           'test MSE [0, 1]', 'PSNR (dB)', 'SSIM', 'codes used', 'prior bits/dim',
           'prior / unigram bits per code', 'class consistency')


def describe(config: dict) -> str:
  """Codebook settings in words, e.g. 'EMA (decay 0.99) + restart after 20 steps'."""
  if config.get('codebook', 'loss') == 'ema':
    text = f'EMA (decay {config.get("ema_decay")})'
  else:
    text = 'codebook loss (paper, eq. 3)'
  if config.get('restart_after'):
    text += f' + restart after {config["restart_after"]} unused steps'
  if config.get('codebook_init', 'uniform') != 'uniform':
    text += f', {config["codebook_init"]} init'
  if config.get('lr_schedule', 'constant') != 'constant':
    text += f', {config["lr_schedule"]} lr {config.get("lr")}'
  if config.get('beta') is not None:
    text += f', beta {config["beta"]}'
  text = f'{text}; hidden {config.get("hidden_size")}, K {config.get("k")}'
  if config.get('batch_size'):
    text += f', batch {config["batch_size"]}'
  return f'{config["dataset"]}: {text}' if config.get('dataset') else text


def _minutes(seconds) -> str:
  return '' if seconds is None else f'{seconds / 60:.1f} min'


def _wall(train: dict) -> str:
  text = _minutes(train.get('wall_s'))
  if text and 'prior_wall_s' in train:
    text += f' ({_minutes(train["vq_wall_s"])} + prior {_minutes(train["prior_wall_s"])})'
  if text and train.get('vq_wall_source', 'timed.py') != 'timed.py':
    text += ' (VQ-VAE steps only, from its metrics.jsonl)'
  if text and (train.get('other_procs_cpu_frac') or 0) > 0.05:
    text += f', under load ({100 * train["other_procs_cpu_frac"]:.0f}% other processes)'
  return text


def row(result: dict, train: dict) -> list:
  prior = result.get('prior') or {}
  return [describe(result.get('config', {})), str(train.get('steps', result['step'])),
          train.get('hardware', '') + (f', {train["date"]}' if train.get('date') else ''),
          _wall(train),
          f'{result["mse"]:.4f}', f'{result["mse01"]:.5f}', f'{result["psnr"]:.2f}',
          f'{result["ssim"]:.4f}',
          f'{result["codes_used"]} / {result["k"]} ({100 * result["usage"]:.1f}%)',
          f'{prior["bits_per_dim"]:.4f}' if prior else '',
          (f'{prior["bits_per_code"]:.3f} / {prior["unigram_bits_per_code"]:.3f}'
           if 'unigram_bits_per_code' in prior else ''),
          _consistency(result.get('class_consistency'))]


def _consistency(cc) -> str:
  if not cc:
    return ''
  if cc.get('value') is None:
    return 'n/a'
  return (f'{100 * cc["value"]:.1f}% (classifier: {100 * cc["classifier_test_accuracy"]:.1f}% '
          'on real test images)')


def load(folder: str) -> list[tuple[str, dict, dict]]:
  runs = []
  for path in sorted(glob.glob(os.path.join(folder, '*.eval.json'))):
    name = os.path.basename(path)[:-len('.eval.json')]
    with open(path) as f:
      result = json.load(f)
    train_path = os.path.join(folder, name + '.train.json')
    train = {}
    if os.path.exists(train_path):
      with open(train_path) as f:
        train = json.load(f)
    runs.append((name, result, train))
  runs.sort(key=lambda r: (r[1].get('config', {}).get('codebook') != 'loss', r[0]))
  return runs


def table(folder: str) -> str:
  runs = load(folder)
  if not runs:
    raise SystemExit(f'no *.eval.json in {folder}')
  lines = ['| ' + ' | '.join(COLUMNS) + ' |', '|' + ' --- |' * len(COLUMNS)]
  lines += ['| ' + ' | '.join(row(result, train)) + ' |' for _, result, train in runs]
  split = {r['split'] for _, r, _ in runs}
  lines.append('')
  prior_steps = sorted({str(r['prior']['step']) for _, r, _ in runs if r.get('prior')})
  sizes = ', '.join(sorted({f'{r["n"]} {r.get("config", {}).get("dataset") or "images"}'
                            for _, r, _ in runs}))
  lines.append(f'Measured on the {"/".join(sorted(split))} split '
               f'({sizes}) by `python -m vqvae_jax evaluate`'
               + (f'; priors trained for {"/".join(prior_steps)} steps.' if prior_steps else '.'))
  return '\n'.join(lines)


def table_main(doc: str, make_table, folder: str, name: str, argv=None) -> None:
  """The command line of a README table generator with one fixed table `name`:
  prints `make_table(--folder)`; --update README also replaces the README's table."""
  ap = argparse.ArgumentParser(description=doc,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument('--folder', default=folder)
  ap.add_argument('--update', default=None, metavar='README',
                  help=f'replace the table between <!-- table:{name} --> and '
                       f'<!-- /table:{name} --> in this file')
  args = ap.parse_args(argv)
  text = make_table(args.folder)
  if args.update:
    update(args.update, name, text)
  print(text)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('folder', nargs='?', default=os.path.join(os.path.dirname(__file__),
                                                                'results', 'cpu-recipes'))
  parser.add_argument('--update', default=None, metavar='README',
                      help='replace the table between <!-- table:NAME --> and '
                           '<!-- /table:NAME --> in this file (NAME: the folder\'s name)')
  args = parser.parse_args(argv)
  text = table(args.folder)
  if args.update:
    update(args.update, os.path.basename(os.path.normpath(args.folder)), text)
  print(text)


def update(path: str, name: str, text: str) -> None:
  """Replaces the lines between the markers of `name` in `path` with `text`."""
  begin, end = f'<!-- table:{name} -->', f'<!-- /table:{name} -->'
  with open(path, encoding='utf-8') as f:
    doc = f.read()
  if begin not in doc or end not in doc:
    raise SystemExit(f'{path} has no {begin} ... {end} markers')
  head, rest = doc.split(begin, 1)
  _, tail = rest.split(end, 1)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(f'{head}{begin}\n{text}\n{end}{tail}')


if __name__ == '__main__':
  sys.exit(main())
