"""Runs one stage of benchmarks/run_results.sh and adds its wall time to a record.

    python benchmarks/timed.py runs/results/fmnist.time.json -- python3 train_vqvae.py ...
    python benchmarks/timed.py runs/results/fmnist.time.json --from-metrics runs/results/fmnist

The record (JSON) keeps the total wall seconds over every invocation (a run
killed at the end of a session and resumed later adds up), the number of
invocations, the CPU time the stage itself used, the other processes' share of
the machine while it ran (time-weighted; > 0.05: the wall time was taken
under load), the machine and the date of the last invocation. SIGTERM and
SIGINT are passed to the stage (the trainers then save a checkpoint) and the
time so far is still recorded. Exits with the stage's status.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.machine import CpuSnap, cpu_info  # noqa: E402


def from_metrics(path: str, run_dir: str) -> int:
  """A record for a run trained without timed.py: the seconds its training
  steps took, summed from the img/s of metrics.jsonl's train rows (under
  whatever load there was; evaluation, checkpoints and start-up not counted)."""
  seconds, steps, last = 0.0, 0, 0
  with open(os.path.join(run_dir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  with open(os.path.join(run_dir, 'config.json')) as f:
    batch = json.load(f)['batch_size']
  for row in rows:
    if row.get('split') == 'train' and row.get('img_per_s'):
      n = row['step'] - last
      seconds += n * batch / row['img_per_s']
      steps, last = steps + n, row['step']
  record = {'wall_s': round(seconds, 1), 'steps_timed': steps,
            'source': 'steps only, from the img/s in metrics.jsonl (run not timed by timed.py)',
            'machine': cpu_info(), 'date': time.strftime('%Y-%m-%d'), 'invocations': 0}
  with open(path, 'w') as f:
    json.dump(record, f, indent=2, sort_keys=True)
  print(json.dumps(record))
  return 0


def main(argv):
  if len(argv) == 3 and argv[1] == '--from-metrics':
    return from_metrics(argv[0], argv[2])
  if len(argv) < 3 or argv[1] != '--':
    raise SystemExit('usage: timed.py RECORD.json -- COMMAND ...  |  '
                     'timed.py RECORD.json --from-metrics RUN_DIR')
  path, command = argv[0], argv[2:]
  record = {}
  if os.path.exists(path):
    with open(path) as f:
      record = json.load(f)
  snap, start = CpuSnap(), time.perf_counter()
  child = subprocess.Popen(command)
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda s, _: child.send_signal(s))
  rc = child.wait()
  wall = time.perf_counter() - start
  other = snap.other_frac()
  old_wall = record.get('wall_s', 0.0)
  old_other = record.get('other_procs_cpu_frac') or 0.0
  total = old_wall + wall
  record.update(
      wall_s=round(total, 1), invocations=record.get('invocations', 0) + 1,
      other_procs_cpu_frac=None if other is None else
      round((old_other * old_wall + other * wall) / max(total, 1e-9), 3),
      last_exit_status=rc, command=' '.join(command), machine=cpu_info(),
      date=time.strftime('%Y-%m-%d'))
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(record, f, indent=2, sort_keys=True)
  os.replace(tmp, path)
  return rc


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
