"""Codebook health during VQ-VAE training: EMA updates, dead-code restarts, seeding.

The arithmetic lives in `vqvae_jax.models.quantizer` (pure functions); this
module applies it to a `states.TrainState` inside the pmap'd train step
(`update_codebook`, identical on every replica) and before the first step
(`init_codebook`), and checks the config's codebook settings.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from vqvae_jax import data
from vqvae_jax.errors import UserError
from vqvae_jax.models import quantizer
from vqvae_jax.models.vqvae import VQVAE, to_float
from vqvae_jax.states import CODEBOOKS, TrainState
from vqvae_jax.train.loop import AXIS

CODEBOOK_INITS = ('uniform', 'data', 'kmeans')


@dataclasses.dataclass(frozen=True)
class CodebookOptions:
  """How `train_step` updates the codebook (static; from the config)."""
  kind: str = 'loss'          # 'loss' (eq. 3) or 'ema' (appendix A.1)
  decay: float = 0.99
  epsilon: float = 1e-5
  restart_after: int = 0      # > 0: restart codes unused for this many steps
  seed: int = 0

  @classmethod
  def from_config(cls, config):
    return cls(kind=config.codebook, decay=config.ema_decay, epsilon=config.ema_epsilon,
               restart_after=config.restart_after, seed=config.seed)


def check_config(config) -> None:
  """UserError for codebook settings the trainer cannot use."""
  if config.codebook not in CODEBOOKS:
    raise UserError(f'codebook must be one of {", ".join(CODEBOOKS)}, got {config.codebook!r}')
  if config.codebook_init not in CODEBOOK_INITS:
    raise UserError(f'codebook_init must be one of {", ".join(CODEBOOK_INITS)}, '
                    f'got {config.codebook_init!r}')
  try:
    quantizer.check_ema_args(config.ema_decay, config.ema_epsilon)
  except ValueError as e:
    raise UserError(str(e)) from None
  if config.restart_after < 0 or config.kmeans_iters < 0 or config.codebook_init_batches < 1:
    raise UserError('need restart_after >= 0, kmeans_iters >= 0 and codebook_init_batches '
                    f'>= 1, got {config.restart_after}, {config.kmeans_iters}, '
                    f'{config.codebook_init_batches}')


def update_codebook(state, step, z_e, indices, counts, opts: CodebookOptions):
  """EMA update and dead-code restart, identical on every replica (under pmap).

  z_e: [b, h, w, D] this device's encoder outputs, indices [b, h, w] their
  codes, counts [K] code counts summed over devices. Returns (state, number of
  codes restarted).
  """
  if state.codebook_state is None:  # a TrainState built without codebook statistics
    if opts.kind != 'loss' or opts.restart_after > 0:
      raise ValueError('the EMA codebook and dead-code restart need '
                       'TrainState.codebook_state (see states.create_train_state)')
    return state, jnp.zeros((), jnp.int32)
  cb_state = dict(state.codebook_state)
  codebook = state.params['codebook']
  flat_z = z_e.reshape(-1, z_e.shape[-1]).astype(jnp.float32)
  if opts.kind == 'ema':
    codebook, cb_state['ema_counts'], cb_state['ema_sums'] = quantizer.ema_update(
        cb_state['ema_counts'], cb_state['ema_sums'], flat_z, indices.reshape(-1),
        decay=opts.decay, epsilon=opts.epsilon, axis_name=AXIS)
  restarts = jnp.zeros((), jnp.int32)
  if opts.restart_after > 0:
    candidates = lax.all_gather(flat_z, AXIS, tiled=True)
    key = jax.random.fold_in(jax.random.key(opts.seed), step)
    codebook, cb_state['unused'], dead = quantizer.restart_dead_codes(
        codebook, cb_state['unused'], counts, candidates, key, restart_after=opts.restart_after)
    if opts.kind == 'ema':  # a restarted code starts as if chosen once
      cb_state['ema_counts'] = jnp.where(dead, 1.0, cb_state['ema_counts'])
      cb_state['ema_sums'] = jnp.where(dead[:, None], codebook, cb_state['ema_sums'])
    restarts = jnp.sum(dead.astype(jnp.int32))
  else:
    cb_state['unused'] = jnp.where(counts > 0, 0, cb_state['unused'] + 1)
  params = dict(state.params)
  params['codebook'] = codebook.astype(state.params['codebook'].dtype)
  return state.replace(params=params, codebook_state=cb_state), restarts


def init_codebook(config, state: TrainState, model: VQVAE, train_ds) -> TrainState:
  """Seeds the codebook from encoder outputs of the first training batches.

  config.codebook_init: 'uniform' (keep U(-1/K, 1/K)), 'data' (K random encoder
  outputs) or 'kmeans' (then `kmeans_iters` Lloyd iterations). Uses the first
  `codebook_init_batches` global batches of epoch 0 with batch statistics
  (train-mode BatchNorm, statistics not kept), so every process and device gets
  the same codebook; deterministic from the seed. `model` has no pmap axis.
  """
  if config.codebook_init == 'uniform':
    return state
  encode = jax.jit(lambda v, x: model.apply(
      v, to_float(x), True, method=lambda m, x, t: m.encoder(x, t), mutable=['batch_stats'])[0])
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  vectors = []
  batches = data.train_batches(train_ds, config.batch_size, seed=config.seed, epoch=0)
  for i, (images, _) in enumerate(batches):
    if i == config.codebook_init_batches:
      break
    z_e = encode(variables, images)
    vectors.append(z_e.reshape(-1, z_e.shape[-1]).astype(jnp.float32))
  key = jax.random.fold_in(jax.random.key(config.seed), 2)
  iters = config.kmeans_iters if config.codebook_init == 'kmeans' else 0
  codebook = quantizer.kmeans(jnp.concatenate(vectors), key, k=config.k, iters=iters)
  params = dict(state.params)
  params['codebook'] = codebook.astype(state.params['codebook'].dtype)
  cb_state = dict(state.codebook_state)
  if config.codebook == 'ema':
    cb_state['ema_counts'], cb_state['ema_sums'] = quantizer.ema_init(codebook)
  return state.replace(params=params, codebook_state=cb_state)
