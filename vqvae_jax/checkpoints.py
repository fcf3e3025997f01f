"""The only module that talks to Orbax.

A run's checkpoints live in `<workdir>/checkpoints/<step>/` with two items:
`state` (a pytree of arrays: parameters, optimiser state, BatchNorm statistics,
step, ...) and `meta` (JSON: the config, class names, epoch, metrics). Orbax
writes each step to a temporary folder and renames it when complete, so a crash
never leaves a half-written checkpoint where a complete one is expected, and an
unfinished one is ignored on restart. The meta holds the sha256 of the state's
arrays and of the meta itself: a checkpoint damaged after it was written (a
truncated or altered file, a lost item) fails to read or to verify, raises
`DamagedCheckpoint`, and `newest_intact` falls back to an older one.

Kept: the latest `keep` checkpoints, plus the best one by validation loss (a
preservation policy: Orbax's `max_to_keep` with `best_fn` would keep the best N
and drop the latest).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any, Callable, Optional

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from vqvae_jax.errors import UserError

BEST_METRIC = 'valid_loss'


def _best_value(metrics):
  return float(metrics[BEST_METRIC])


class DamagedCheckpoint(UserError):
  """A checkpoint whose files cannot be read back, or whose arrays or meta no
  longer match the digests written with them. Callers fall back to an older one."""


# Meta keys that hold the digests (hex sha256) written with every checkpoint.
STATE_DIGEST, META_DIGEST = 'state_digest', 'meta_digest'


def _meta_digest(meta: dict) -> str:
  """sha256 hex of the canonical JSON of `meta` without its digests."""
  return hashlib.sha256(json.dumps(_without_digests(meta), sort_keys=True).encode()).hexdigest()


def _without_digests(meta: dict) -> dict:
  return {k: v for k, v in meta.items() if k not in (STATE_DIGEST, META_DIGEST)}


def _one_line(e: BaseException, limit: int = 200) -> str:
  text = ' '.join(str(e).split())
  return f'{type(e).__name__}: {text[:limit]}'


def _signature(x):
  return tuple(np.shape(x)), np.dtype(x.dtype) if hasattr(x, 'dtype') else np.asarray(x).dtype


def _fits(saved, leaf) -> bool:
  """Same shape and dtype; a saved Python scalar (Orbax keeps ints as ints) fits
  any 0-d integer / float leaf of its kind."""
  if isinstance(saved, (int, float)) and not isinstance(saved, bool) and np.shape(leaf) == ():
    kind = 'iu' if isinstance(saved, int) else 'f'
    return np.dtype(leaf.dtype).kind in kind
  return _signature(saved) == _signature(leaf)


def fit_to(tree, target, where: str):
  """Arranges the leaves of a restored `tree` in the structure of `target`.

  Leaves are matched by their key path; every leaf of `target` (arrays or
  `jax.ShapeDtypeStruct`s) needs one of the same shape and dtype in `tree`.
  Raises UserError naming the differences (a checkpoint of another model
  configuration).
  """
  got = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(tree)}
  want = jax.tree_util.tree_leaves_with_path(target)
  bad = []
  for path, leaf in want:
    key = jax.tree_util.keystr(path)
    if key not in got:
      bad.append(f'{key}: missing')
    elif not _fits(got[key], leaf):
      bad.append(f'{key}: saved {_signature(got[key])}, expected {_signature(leaf)}')
  extra = set(got) - {jax.tree_util.keystr(k) for k, _ in want}
  bad += [f'{key}: not in this model' for key in sorted(extra)]
  if bad:
    raise UserError(f'checkpoint {where} does not fit this model configuration: ' +
                    '; '.join(bad[:5]))
  leaves = [np.asarray(got[jax.tree_util.keystr(k)], leaf.dtype) for k, leaf in want]
  return jax.tree.unflatten(jax.tree.structure(target), leaves)


class Checkpointer:
  """Saves and restores (state pytree, meta dict) pairs by step.

  Every meta carries the sha256 of the state's arrays (`params_digest`) and of
  the meta itself; reads verify them and raise `DamagedCheckpoint` on any
  failure. A meta without digests (written by older versions) is trusted.
  """

  def __init__(self, directory: str, keep: int = 3, read_only: bool = False):
    directory = os.path.abspath(directory)
    if read_only and not os.path.isdir(directory):
      raise UserError(f'no checkpoints in {directory}: train a model there first')
    policy = pp.AnyPreservationPolicy([
        pp.LatestN(n=max(1, keep)),
        pp.BestN(get_metric_fn=_best_value, reverse=True, n=1,
                 keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, best_fn=_best_value, best_mode='min',
        create=not read_only, read_only=read_only)
    self.directory = directory
    self._manager = ocp.CheckpointManager(directory, options=options,
                                          item_names=('state', 'meta'))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def best_step(self) -> Optional[int]:
    """The step with the lowest validation loss (latest if none has metrics)."""
    return self._manager.best_step()

  def all_steps(self):
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: dict, metrics: Optional[dict] = None):
    """Writes (asynchronously) host arrays `state` and JSON-able `meta` at `step`,
    the meta with the digests of both.

    `metrics` with a 'valid_loss' entry make the checkpoint a candidate for best.
    """
    meta = dict(meta, **{STATE_DIGEST: params_digest(state).hex()})
    meta[META_DIGEST] = _meta_digest(meta)
    self._manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                meta=ocp.args.JsonSave(meta)),
        metrics=metrics, force=True)

  def restore_meta(self, step: int) -> dict:
    """The meta of `step` (without its digests); DamagedCheckpoint if
    unreadable or altered."""
    return _without_digests(self._verified_meta(step))

  def _verified_meta(self, step: int) -> dict:
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(
          meta=ocp.args.JsonRestore()))['meta']
    except Exception as e:  # pylint: disable=broad-except  (Orbax raises bare Exception too)
      raise DamagedCheckpoint(self._damaged(step, f'meta unreadable ({_one_line(e)})')) from None
    if not isinstance(meta, dict):
      raise DamagedCheckpoint(self._damaged(step, 'meta is not a JSON object'))
    if META_DIGEST in meta and meta[META_DIGEST] != _meta_digest(meta):
      raise DamagedCheckpoint(self._damaged(step, 'meta does not match its digest'))
    return meta

  def read(self, step: int):
    """(state as saved: a pytree of numpy arrays, meta) of `step`, verified
    against the meta's digests; DamagedCheckpoint on any failure."""
    meta = self._verified_meta(step)
    try:
      tree = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore()))['state']
    except Exception as e:  # pylint: disable=broad-except
      raise DamagedCheckpoint(self._damaged(step, f'arrays unreadable ({_one_line(e)})')) from None
    if STATE_DIGEST in meta and meta[STATE_DIGEST] != params_digest(tree).hex():
      raise DamagedCheckpoint(self._damaged(step, 'arrays do not match their digest'))
    return tree, _without_digests(meta)

  def restore(self, step: int, target: Any):
    """Restores `state` into the structure, shapes and dtypes of `target`.

    Raises DamagedCheckpoint (see `read`), or UserError when the saved arrays
    do not fit `target` (a checkpoint of another model configuration).
    """
    tree, meta = self.read(step)
    return fit_to(tree, target, f'{self.directory}/{step}'), meta

  def _damaged(self, step, why):
    return f'checkpoint {self.directory}/{step} is damaged: {why}'

  def wait(self):
    """Blocks until asynchronous writes are finished."""
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()


def newest_intact(ckpt: Checkpointer, steps, load: Callable[[int], Any]):
  """Calls `load(step)` on `steps` in order until one does not raise
  DamagedCheckpoint; other errors (an incompatible run) propagate.

  Prints one warning line per damaged checkpoint (process 0). Returns (step,
  load's result, [damaged steps]); UserError, touching nothing, if none is intact.
  """
  damaged = []
  for step in steps:
    try:
      result = load(step)
    except DamagedCheckpoint as e:
      damaged.append((step, str(e)))
      continue
    for _, why in damaged:
      _warn(f'{why}; falling back to step {step}')
    return step, result, [s for s, _ in damaged]
  if not damaged:
    raise UserError(f'no checkpoint in {ckpt.directory}')
  raise UserError(f'no intact checkpoint in {ckpt.directory} (left as it is): ' + '; '.join(
      why.replace(f'checkpoint {ckpt.directory}/', 'step ') for _, why in damaged))


def _warn(message: str) -> None:
  if jax.process_index() == 0:
    print(f'warning: {message}', file=sys.stderr)


def set_aside(directory: str, steps, dest: str) -> None:
  """Moves the damaged `steps` of a checkpoint folder into `dest`, so they are
  neither the latest step nor in the way of a new save of the same step.
  Process 0 moves; every process waits for it."""
  if jax.process_index() == 0:
    for step in steps:
      target = os.path.join(dest, str(step))
      n = 1
      while os.path.exists(target):
        target, n = os.path.join(dest, f'{step}.{n}'), n + 1
      os.makedirs(dest, exist_ok=True)
      os.replace(os.path.join(directory, str(step)), target)
      _warn(f'moved the damaged checkpoint {directory}/{step} to {target}')
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('vqvae_jax.checkpoints.set_aside')


_KIND_NAMES = {'vqvae': 'VQ-VAE', 'prior': 'prior'}


def restore_run(workdir: str, kind: str, which: str, make_state):
  """Restores the training state of a run folder alone.

  `kind` is the run's 'vqvae' or 'prior'; `which` 'best' (by validation, the
  latest if none) or 'latest'; `make_state(meta) -> (model, state, epoch_sums)`
  builds the model and the templates (a flax struct and a pytree of arrays or
  `jax.ShapeDtypeStruct`s) from the saved meta. A damaged checkpoint is
  reported and skipped: then the latest intact one is used (`vqvae_jax.runs`
  also takes pretrained folders). Returns (model, restored state, meta).
  """
  name = _KIND_NAMES[kind]
  ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'), read_only=True)

  def load(step):
    meta = ckpt.restore_meta(step)
    if meta.get('kind') != kind:
      raise UserError(f'{workdir} does not hold a {name} (kind {meta.get("kind")!r})')
    model, state, epoch_sums = make_state(meta)
    template = {'state': flax.serialization.to_state_dict(state), 'epoch_sums': epoch_sums}
    saved, _ = ckpt.restore(step, template)
    return model, flax.serialization.from_state_dict(state, saved['state']), meta

  try:
    steps = sorted(ckpt.all_steps(), reverse=True)
    if not steps:
      raise UserError(f'no checkpoint in {workdir}/checkpoints: train a {name} there first')
    best = ckpt.best_step() if which == 'best' else None
    if best is not None:
      steps = [best] + [s for s in steps if s != best]
    _, (model, state, meta), _ = newest_intact(ckpt, steps, load)
  finally:
    ckpt.close()
  return model, state, meta


def params_digest(tree) -> bytes:
  """sha256 of every leaf's bytes, in tree order: identifies a model's parameters."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return h.digest()


def vqvae_fingerprint(variables) -> str:
  """The first 8 bytes of `params_digest`, in hex: a prior (and its cached
  codes) records the VQ-VAE it was fitted to with it."""
  return params_digest(variables)[:8].hex()
