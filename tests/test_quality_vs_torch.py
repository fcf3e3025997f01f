"""benchmarks/quality_vs_torch.py: the alternating race and the shared batch order
(the trainers themselves are exercised by running the benchmark)."""
import os
import sys
import types

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
import quality_vs_torch  # noqa: E402


class _Fake:
  """A trainer making `rate` steps a second, in whole steps."""

  def __init__(self, rate, log):
    self.rate, self.log, self.steps, self.clock = rate, log, 0, 0.0

  def train(self, seconds, until=None):
    n = int(seconds * self.rate)
    if until is not None:
      n = min(n, until - self.steps)
    self.steps += n
    self.clock += n / self.rate if until is not None and self.steps == until else seconds
    self.log.append((self, seconds, until))


def test_race_evaluates_each_side_at_the_steps_and_at_the_budget():
  log = []
  fast, slow = _Fake(3.0, log), _Fake(1.0, log)
  args = types.SimpleNamespace(steps=50, budget_s=100.0, slice_s=30.0)
  seen = []

  def evaluate(name):
    side = {'fast': fast, 'slow': slow}[name]
    seen.append((name, side.steps, side.clock))
    return {'psnr': float(side.steps)}

  done = quality_vs_torch._race(args, {'slow': slow, 'fast': fast}, evaluate)  # pylint: disable=protected-access
  assert done['slow']['a']['steps'] == done['fast']['a']['steps'] == 50
  assert done['fast']['a']['train_s'] < 30  # stopped at step 50, inside its first turn
  assert done['slow']['b']['train_s'] >= 100 and done['fast']['b']['train_s'] >= 100
  assert done['slow']['b']['steps'] == 100 and done['fast']['b']['steps'] >= 290
  # turns alternate slow, fast, slow, ... and never run past the budget by a whole slice
  order = [s for s, _, _ in log]
  assert order[:4] == [slow, fast, slow, fast]
  assert all(sec <= 30.0 for _, sec, _ in log)
  assert len(seen) == 4  # one evaluation each for (a) and (b)


def test_batch_order_is_one_permutation_per_epoch_from_the_seed():
  it = quality_vs_torch.batch_order(10, 3, seed=5)
  epoch = [next(it) for _ in range(3)]  # 3 full batches; the 10th index is dropped
  flat = np.concatenate(epoch)
  assert len(set(flat.tolist())) == 9 and flat.max() < 10
  again = quality_vs_torch.batch_order(10, 3, seed=5)
  assert all((a == next(again)).all() for a in epoch)
  second = np.concatenate([next(it) for _ in range(3)])
  assert len(set(second.tolist())) == 9 and not (second == flat).all()  # a fresh permutation
