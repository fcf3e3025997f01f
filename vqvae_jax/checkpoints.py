"""The only module that talks to Orbax.

A run's checkpoints live in `<workdir>/checkpoints/<step>/` with two items:
`state` (a pytree of arrays: parameters, optimiser state, BatchNorm statistics,
step, ...) and `meta` (JSON: the config, class names, epoch, metrics). Orbax
writes each step to a temporary folder and renames it when complete, so a crash
never leaves a half-written checkpoint where a complete one is expected, and an
unfinished one is ignored on restart.

Kept: the latest `keep` checkpoints, plus the best one by validation loss (a
preservation policy: Orbax's `max_to_keep` with `best_fn` would keep the best N
and drop the latest).
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Optional

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from vqvae_jax.errors import UserError

BEST_METRIC = 'valid_loss'


def _best_value(metrics):
  return float(metrics[BEST_METRIC])


class Checkpointer:
  """Saves and restores (state pytree, meta dict) pairs by step."""

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
    """Writes (asynchronously) host arrays `state` and JSON-able `meta` at `step`.

    `metrics` with a 'valid_loss' entry make the checkpoint a candidate for best.
    """
    self._manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                meta=ocp.args.JsonSave(meta)),
        metrics=metrics, force=True)

  def restore_meta(self, step: int) -> dict:
    out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return out['meta']

  def restore(self, step: int, target: Any):
    """Restores `state` into the structure, shapes and dtypes of `target`.

    Raises UserError when the saved arrays do not fit `target` (a checkpoint of
    another model configuration).
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    try:
      out = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    except (ValueError, KeyError, TypeError) as e:
      raise UserError(f'checkpoint {self.directory}/{step} does not fit this model '
                      f'configuration ({type(e).__name__}: {str(e)[:300]})') from None
    state = out['state']
    got = jax.tree.map(lambda x: (x.shape, x.dtype), state)
    want = jax.tree.map(lambda x: (x.shape, x.dtype), abstract)
    if got != want:
      bad = [f'{jax.tree_util.keystr(k)}: saved {g}, expected {w}' for (k, g), w in zip(
          jax.tree_util.tree_leaves_with_path(got, is_leaf=lambda t: isinstance(t, tuple)),
          jax.tree.leaves(want, is_leaf=lambda t: isinstance(t, tuple))) if g != w]
      raise UserError(f'checkpoint {self.directory}/{step} does not fit this model '
                      f'configuration: ' + '; '.join(bad[:5]))
    return state, out['meta']

  def wait(self):
    """Blocks until asynchronous writes are finished."""
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()


_KIND_NAMES = {'vqvae': 'VQ-VAE', 'prior': 'prior'}


def restore_run(workdir: str, kind: str, which: str, make_state):
  """Restores the training state of a run folder alone.

  `kind` is the run's 'vqvae' or 'prior'; `which` 'best' (by validation, the
  latest if none) or 'latest'; `make_state(meta) -> (model, state, epoch_sums)`
  builds the model and the templates (a flax struct and a pytree of arrays)
  from the saved meta. Returns (model, restored state, meta).
  """
  name = _KIND_NAMES[kind]
  ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'), read_only=True)
  try:
    step = (ckpt.best_step() if which == 'best' else None) or ckpt.latest_step()
    if step is None:
      raise UserError(f'no checkpoint in {workdir}/checkpoints: train a {name} there first')
    meta = ckpt.restore_meta(step)
    if meta.get('kind') != kind:
      raise UserError(f'{workdir} does not hold a {name} (kind {meta.get("kind")!r})')
    model, state, epoch_sums = make_state(meta)
    template = {'state': flax.serialization.to_state_dict(state), 'epoch_sums': epoch_sums}
    saved, _ = ckpt.restore(step, template)
  finally:
    ckpt.close()
  return model, flax.serialization.from_state_dict(state, saved['state']), meta


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
