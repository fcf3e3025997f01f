"""The training loop shared by the VQ-VAE and the prior.

One loop, two models: a model brings a pure `step_fn(state, images, labels) ->
(state, metrics)` that uses `lax.pmean`/`psum` over the 'batch' axis, an
`evaluate(replicated_state, split) -> dict` and an end-of-epoch hook. The loop
pmaps the step over the local devices, feeds it shuffled batches (the order a
pure function of seed and epoch), logs, checkpoints, and resumes.

Resuming: rerunning the same command restores the latest intact checkpoint
(state, step, the epoch's metric sums) and continues with the same data order,
so a run killed at any point ends with the parameters of an uninterrupted one.
`find_resume` reads and checks it before the trainer writes anything.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from typing import Any, Callable, Optional

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from vqvae_jax import checkpoints, data
from vqvae_jax.checkpoints import Checkpointer
from vqvae_jax.errors import UserError
from vqvae_jax.fileio import atomic_write
from vqvae_jax.train.metrics_log import MetricsWriter

AXIS = 'batch'


class TrainingDiverged(UserError):
  """The loss became non-finite; the last good checkpoint is kept."""


@dataclasses.dataclass
class Task:
  """What one model contributes to `fit`.

  step_fn: (state, images [b, ...], labels [b] int32) -> (state, metrics),
    run under pmap with axis 'batch'; metrics is a dict of arrays identical on
    every device (already reduced over the axis).
  summarize: (metric sums as numpy, number of steps) -> dict of floats to log.
  evaluate: (replicated state) -> dict of floats with 'loss' (validation).
  on_epoch_end: optional (replicated state, epoch, step) -> None (images etc.).
  augment: optional (images [B', ...] of this host, *, epoch, step, first_index)
    -> images: training batches only, keyed by the global step and the position
    of this host's slice in the global batch (`data.augment`).
  warm_up: optional (replicated state) -> None, run once before the first step:
    compiles what `evaluate` runs, so that no epoch pays for it.
  """
  step_fn: Callable
  summarize: Callable[[dict, int], dict]
  evaluate: Callable[[Any], dict]
  on_epoch_end: Optional[Callable[[Any, int, int], None]] = None
  augment: Optional[Callable[..., Any]] = None
  warm_up: Optional[Callable[[Any], None]] = None


@dataclasses.dataclass(frozen=True)
class Resume:
  """The newest intact checkpoint of a run folder, read and checked.

  tree: the saved {'state': state dict, 'epoch_sums': ...} as numpy arrays;
  damaged: newer steps that failed to read or verify (set aside by `fit`).
  """
  step: int
  tree: Any
  meta: dict
  damaged: tuple = ()


def find_resume(workdir: str, check_meta: Callable[[dict], None]) -> Optional[Resume]:
  """Reads the checkpoint a run in `workdir` would resume from, writing nothing.

  Trainers call it before their first write, so a refused run (check_meta
  raises UserError: another kind of run or configuration) or a folder whose
  every checkpoint is damaged (UserError) leaves the folder as it was. A
  damaged checkpoint is reported and the next older one tried. None: a new run.
  """
  folder = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(folder):
    return None
  ckpt = Checkpointer(folder, read_only=True)
  try:
    steps = sorted(ckpt.all_steps(), reverse=True)
    if not steps:
      return None

    def load(step):
      check_meta(ckpt.restore_meta(step))
      return ckpt.read(step)

    step, (tree, meta), damaged = checkpoints.newest_intact(ckpt, steps, load)
  finally:
    ckpt.close()
  return Resume(step=step, tree=tree, meta=meta, damaged=tuple(damaged))


def replicate(tree, devices=None):
  """Copies every leaf x to each local device: [n_dev, *x.shape], pmap-ready."""
  devices = list(devices or jax.local_devices())
  mesh = jax.sharding.Mesh(np.array(devices), (AXIS,))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))
  return jax.tree.map(
      lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (len(devices),) + np.shape(x)),
                               sharding), tree)


def unreplicate(tree):
  """Device 0's copy of a replicated (pmap'd) tree, on the host."""
  return jax.device_get(jax.tree.map(lambda x: x[0], tree))


def eval_sums(rstate, ds, batch_size: int, p_eval) -> dict:
  """Runs `p_eval(replicated state, *batch, mask) -> sums (psum'd over 'batch')`
  over every example of `ds` (this process's share of each padded global batch)
  and returns the totals on the host."""
  totals = None
  for batch in data.prefetch_to_device(data.eval_batches(
      ds, batch_size, process_index=jax.process_index(),
      process_count=jax.process_count())):
    sums = p_eval(rstate, *batch)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  return unreplicate(totals)


def warm_up_eval(rstate, ds, batch_size: int, p_eval) -> None:
  """Runs `p_eval` as `eval_sums` does on the first batch of `ds` and drops the
  result: compiles the validation step before training (a `Task.warm_up`)."""
  batches = data.prefetch_to_device(data.eval_batches(
      ds, batch_size, process_index=jax.process_index(), process_count=jax.process_count()))
  batch = next(iter(batches), None)
  if batch is not None:
    jax.block_until_ready(p_eval(rstate, *batch))


def _all_finite(tree) -> bool:
  return all(bool(np.all(np.isfinite(x))) for x in jax.tree.leaves(tree)
             if np.issubdtype(np.asarray(x).dtype, np.floating))


class _StopRequest:
  """SIGTERM/SIGINT during training: checkpoint at the next step, then stop."""

  def __init__(self):
    self.requested = False
    self._old = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    if self.requested:  # second signal: stop at once
      raise KeyboardInterrupt
    self.requested = True
    print(f'\nsignal {signum}: saving a checkpoint and stopping', file=sys.stderr)

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)
    return False


def fit(config, workdir: str, *, task: Task, state, train_ds, meta: dict,
        resume: Optional[Resume]) -> dict:
  """Trains `state` (an unreplicated flax TrainState) for config.num_epochs.

  Args:
    config: needs seed, batch_size, num_epochs, max_steps, log_every,
      ckpt_every, keep_checkpoints, progress.
    workdir: output folder; checkpoints go to `<workdir>/checkpoints`.
    task: the model's step, evaluation and hooks.
    state: freshly initialised state (replaced by the latest checkpoint if any).
    train_ds: the training `data.Dataset`.
    meta: JSON-able description saved with every checkpoint (config, ...).
    resume: `find_resume(workdir, ...)`, called before anything was written;
      its damaged steps are moved to `<workdir>/damaged_checkpoints/`.
  Returns:
    {'step', 'epoch', 'valid': last validation metrics or None, 'stopped_early',
    'state': the replicated final state}.
  """
  n_dev, pc, pi = jax.local_device_count(), jax.process_count(), jax.process_index()
  if config.batch_size % (n_dev * pc):
    raise UserError(f'batch size {config.batch_size} is not divisible by the number of '
                    f'devices ({n_dev * pc}); pick a multiple of {n_dev * pc}')
  spe = data.steps_per_epoch(train_ds, config.batch_size)
  if spe == 0:
    raise UserError(f'batch size {config.batch_size} is larger than the training set '
                    f'({len(train_ds)} examples)')
  total = total_steps(config, train_ds)

  def _step(st, sums, images, labels):
    st, metrics = task.step_fn(st, images, labels)
    return st, jax.tree.map(jnp.add, sums, metrics)

  p_step = jax.pmap(_step, axis_name=AXIS, donate_argnums=(0, 1))
  shapes = jax.eval_shape(
      jax.pmap(lambda s, i, l: task.step_fn(s, i, l)[1], axis_name=AXIS),
      jax.tree.map(lambda x: jax.ShapeDtypeStruct((n_dev,) + np.shape(x), np.asarray(x).dtype),
                   state),
      jax.ShapeDtypeStruct((n_dev, config.batch_size // n_dev // pc) + train_ds.image_shape,
                           train_ds.images.dtype),
      jax.ShapeDtypeStruct((n_dev, config.batch_size // n_dev // pc), jnp.int32))
  zero_sums = jax.tree.map(lambda s: np.zeros(s.shape[1:], s.dtype), shapes)

  epoch_sums = zero_sums
  ckpt_dir = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if resume is not None:
    template = {'state': flax.serialization.to_state_dict(state), 'epoch_sums': zero_sums}
    saved = checkpoints.fit_to(resume.tree, template, f'{ckpt_dir}/{resume.step}')
    state = flax.serialization.from_state_dict(state, saved['state'])
    epoch_sums = saved['epoch_sums']
    # A damaged newer step must neither count as the latest (the keep policy
    # would delete intact ones for it) nor block saving that step again.
    checkpoints.set_aside(ckpt_dir, resume.damaged,
                          os.path.join(os.path.abspath(workdir), 'damaged_checkpoints'))
    if pi == 0:
      print(f'resuming from step {resume.step} in {ckpt_dir}', file=sys.stderr)
  ckpt = Checkpointer(ckpt_dir, keep=config.keep_checkpoints)
  if pi == 0:  # only now: a refused resume leaves the saved run's config.json alone
    atomic_write(os.path.join(workdir, 'config.json'),
                 json.dumps(config.to_dict(), indent=2, sort_keys=True) + '\n')
  step = int(state.step)
  writer = MetricsWriter(workdir, resume_step=step)

  def save(rstate, sums, valid=None):
    host = unreplicate(rstate)
    if not _all_finite(host.params):
      kept = ckpt.latest_step()
      raise TrainingDiverged(
          f'parameters became non-finite by step {step}; ' +
          (f'the last good checkpoint (step {kept}) in {ckpt.directory} is kept'
           if kept is not None else 'no checkpoint had been saved yet') + ': try a lower --lr')
    tree = {'state': flax.serialization.to_state_dict(host), 'epoch_sums': sums}
    metrics = {'valid_loss': float(valid['loss'])} if valid else None
    ckpt.save(step, tree, dict(meta, step=step, epoch=step // spe, valid=valid), metrics)

  devices = jax.local_devices()
  rstate = replicate(state, devices)
  rsums = replicate(epoch_sums, devices)
  bar = tqdm(total=total, initial=step, disable=not config.progress or pi != 0,
             dynamic_ncols=True, desc='train')
  last = {'sums': jax.tree.map(np.asarray, epoch_sums), 'step': step, 'time': time.time()}
  valid = None
  if task.warm_up is not None and step < total:
    task.warm_up(rstate)
  try:
    with _StopRequest() as stop:
      while step < total and not stop.requested:
        epoch, start = divmod(step, spe)
        end = min((epoch + 1) * spe, total)  # this epoch's last step
        batches = data.train_batches(train_ds, config.batch_size, seed=config.seed,
                                     epoch=epoch, start=start, process_index=pi,
                                     process_count=pc)
        if task.augment is not None:
          batches = _augmented(task.augment, batches, epoch, step, pi * (config.batch_size // pc))
        for images, labels in data.prefetch_to_device(batches):
          rstate, rsums = p_step(rstate, rsums, images, labels)
          step += 1
          bar.update(1)
          if step % config.log_every == 0 or step == end:
            _log_interval(task, writer, bar, last, rsums, step, config.batch_size)
          if step == end or stop.requested:
            break
          if step % config.ckpt_every == 0:
            with _outside_steps(last, 'checkpoint_s'):
              save(rstate, unreplicate(rsums))
        if step < end:  # stopped by a signal: keep the partial epoch's sums
          save(rstate, unreplicate(rsums))
          continue
        # The epoch's (or the run's) last step: evaluate, checkpoint, hooks.
        epoch_done = step % spe == 0
        if epoch_done:
          epoch_metrics = task.summarize(unreplicate(rsums), spe)
          writer.write(step, 'train_epoch', dict(epoch_metrics, epoch=epoch + 1))
        with _outside_steps(last, 'evaluate_s'):
          valid = task.evaluate(rstate)
        writer.write(step, 'valid', dict(valid, epoch=step / spe))
        if pi == 0:
          bar.write(f'step {step} (epoch {step / spe:.2f}): ' + ', '.join(
              f'valid {k} {v:.4g}' for k, v in valid.items()))
        sums = zero_sums if epoch_done else unreplicate(rsums)
        if epoch_done:
          rsums = replicate(zero_sums, devices)
          last['sums'] = zero_sums
        with _outside_steps(last, 'checkpoint_s'):
          save(rstate, sums, valid)
        if task.on_epoch_end is not None and pi == 0:
          with _outside_steps(last, 'hooks_s'):
            task.on_epoch_end(rstate, epoch, step)
  finally:
    bar.close()
    ckpt.wait()
    ckpt.close()
    writer.close()
  return {'step': step, 'epoch': step / spe, 'valid': valid,
          'stopped_early': step < total, 'state': rstate}


def total_steps(config, train_ds) -> int:
  """The run's length in updates: num_epochs * steps_per_epoch, capped by
  max_steps > 0 (learning-rate schedules decay over it)."""
  total = data.steps_per_epoch(train_ds, config.batch_size) * config.num_epochs
  return min(total, config.max_steps) if config.max_steps > 0 else total


def _augmented(augment, batches, epoch, first_step, first_index):
  """Augments each host batch, every image keyed by its global step and its
  position in the global batch (this host's slice starts at `first_index`)."""
  for i, (images, labels) in enumerate(batches):
    yield augment(images, epoch=epoch, step=first_step + i, first_index=first_index), labels


_OUTSIDE_KEYS = ('evaluate_s', 'checkpoint_s', 'hooks_s')


@contextlib.contextmanager
def _outside_steps(last, key):
  """Adds the block's wall time to last[key], logged with the next train row
  (whose img_per_s interval holds it; benchmarks/epoch_time.py reads it)."""
  t0 = time.time()
  try:
    yield
  finally:
    last[key] = last.get(key, 0.0) + time.time() - t0


def _log_interval(task, writer, bar, last, rsums, step, batch_size):
  sums = unreplicate(rsums)
  n = step - last['step']
  if n <= 0:
    return
  # The epoch sums restart at zero at each epoch boundary (and `last` with them).
  delta = jax.tree.map(lambda a, b: a - b, sums, last['sums'])
  metrics = task.summarize(delta, n)
  now = time.time()
  metrics['img_per_s'] = n * batch_size / max(now - last['time'], 1e-9)
  for key in _OUTSIDE_KEYS:  # seconds of this interval spent outside the steps
    if key in last:
      metrics[key] = last.pop(key)
  if not np.isfinite(metrics.get('loss', 0.0)):
    raise TrainingDiverged(
        f'the training loss became non-finite ({metrics["loss"]}) by step {step}; '
        'the last good checkpoint is kept: try a lower --lr')
  writer.write(step, 'train', metrics)
  bar.set_postfix(loss=f'{metrics.get("loss", float("nan")):.4f}',
                  img_s=f'{metrics["img_per_s"]:.0f}', refresh=False)
  last.update(sums=sums, step=step, time=now)
