"""Metrics as JSON lines and TensorBoard events (process 0 only)."""
from __future__ import annotations

import json
import os
import time

import jax

from vqvae_jax.fileio import atomic_write, read_jsonl


class MetricsWriter:
  """Appends {'step', 'split', ...} rows to `<workdir>/metrics.jsonl` and TensorBoard."""

  def __init__(self, workdir: str, resume_step: int = 0):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._tb = None
    if not self.enabled:
      return
    # Rows logged after the checkpoint we resume from are replayed: drop them.
    rows = [r for r in read_jsonl(self.path) if r.get('step', 0) <= resume_step]
    atomic_write(self.path, ''.join(json.dumps(r) + '\n' for r in rows))
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, split: str, metrics: dict) -> None:
    if not self.enabled:
      return
    row = {'step': int(step), 'split': split}
    row.update({k: (float(v) if not isinstance(v, (int, str)) else v) for k, v in metrics.items()})
    row['time'] = round(time.time(), 3)  # wall clock: benchmarks/epoch_time.py
    with open(self.path, 'a') as f:
      f.write(json.dumps(row) + '\n')
    for k, v in row.items():
      if k not in ('step', 'split', 'time') and isinstance(v, (int, float)):
        self._tb.add_scalar(f'{split}/{k}', v, step)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
