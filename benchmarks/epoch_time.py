"""Whole epochs against steps x step time, from a training run's metrics.jsonl (issue 13).

    python benchmarks/epoch_time.py runs/fmnist-cpu [more run folders] > epochs.json

Every row of metrics.jsonl carries its wall-clock `time` (written by
train.metrics_log). For each epoch that ends in a `valid` row: its wall
time, from the previous epoch's `valid` row to its own (so it holds the steps,
the data pipeline and augmentation, the train-row logging, the intermediate
checkpoints, the epoch-end evaluation, and the previous epoch's checkpoint
and image grids); for the first epoch, from its first train row on (the steps
before that one pay for compilation); the step time, the median over
the logging intervals that hold training steps only; and the overhead,
wall / (steps x step time) - 1. Prints one JSON line per run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys


def analyse(folder: str) -> dict:
  rows = [json.loads(line) for line in open(os.path.join(folder, 'metrics.jsonl'))]
  if not rows or 'time' not in rows[-1]:
    raise SystemExit(f'{folder}/metrics.jsonl has no wall-clock times (trained before they '
                     'were logged)')
  config = json.load(open(os.path.join(folder, 'config.json')))
  valid = [r for r in rows if r['split'] == 'valid' and 'time' in r]
  train = [r for r in rows if r['split'] == 'train' and 'time' in r]
  boundaries = {r['step'] for r in valid}
  ckpt_every = config.get('ckpt_every') or 0
  # Step time: consecutive train rows with no epoch end and no checkpoint between them.
  per_step = []
  for a, b in zip(train, train[1:]):
    steps = b['step'] - a['step']
    if steps <= 0 or any(a['step'] <= s < b['step'] for s in boundaries):
      continue
    if ckpt_every and b['step'] // ckpt_every != a['step'] // ckpt_every:
      continue
    per_step.append((b['time'] - a['time']) / steps)
  if not per_step:
    raise SystemExit(f'{folder}: no clean logging interval to time a step')
  step_s = statistics.median(per_step)
  epochs = []
  starts = [r for r in train if r['step'] < valid[0]['step']][:1] if valid else []
  for prev, cur in zip(starts + valid, valid):
    steps = cur['step'] - prev['step']
    wall = cur['time'] - prev['time']
    # The loop logs the seconds it spent outside steps in the next train row
    # (train.loop: evaluation, checkpoint writes, epoch-end hooks such as the
    # image grids): checkpoints and hooks inside this window, and this epoch's
    # evaluation in the first row after it.
    inside = [r for r in train if prev['step'] < r['step'] <= cur['step']]
    after = [r for r in train if r['step'] > cur['step']][:1]
    parts = {k: round(sum(r.get(k, 0.0) for r in inside), 2) for k in ('checkpoint_s', 'hooks_s')}
    parts['evaluate_s'] = round(after[0].get('evaluate_s', 0.0), 2) if after else None
    epochs.append({'epoch': cur.get('epoch'), 'from_step': prev['step'], 'steps': steps,
                   'wall_s': round(wall, 2), 'outside_steps': parts,
                   'steps_x_step_s': round(steps * step_s, 2),
                   'overhead': round(wall / (steps * step_s) - 1, 4)})
  return {'run': folder, 'dataset': config.get('dataset'), 'batch_size': config.get('batch_size'),
          'step_s_median': round(step_s, 5), 'step_s_intervals': len(per_step),
          'log_every': config.get('log_every'), 'ckpt_every': ckpt_every, 'epochs': epochs,
          'max_overhead': max((e['overhead'] for e in epochs), default=None)}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument('runs', nargs='+')
  args = ap.parse_args(argv)
  for folder in args.runs:
    print(json.dumps(analyse(folder)))


if __name__ == '__main__':
  sys.exit(main())
