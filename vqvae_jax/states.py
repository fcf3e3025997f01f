"""The training states a run folder's checkpoints hold, for both stages.

The trainers (`vqvae_jax.train`) update them; `vqvae_jax.runs` builds their
shapes to restore a checkpoint into. Their trees (Flax parameter names, optax
state, codebook statistics) are the checkpoint layout: changing them makes old
run folders unreadable.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from vqvae_jax.errors import UserError
from vqvae_jax.models import quantizer
from vqvae_jax.models.prior import GatedPixelCNN
from vqvae_jax.models.vqvae import VQVAE

CODEBOOKS = ('loss', 'ema')


class TrainState(train_state.TrainState):
  """Adam state + BatchNorm statistics + codebook statistics.

  codebook_state: {'unused': [K] int32 steps since each code was last chosen}
  plus, for the EMA codebook, {'ema_counts': [K], 'ema_sums': [K, D]} float32.
  It changes only in `train_step` and is identical on every replica.
  """
  batch_stats: Any = None
  codebook_state: Any = None


def create_train_state(rng, model: VQVAE, image_shape, lr: float,
                       codebook: str = 'loss', tx=None) -> TrainState:
  """Initialises parameters, BatchNorm and codebook statistics and the optimiser
  for images [H, W, C]; `codebook` is 'loss' or 'ema'; `tx` an optax
  transformation (default `optax.adam(lr)`, see `vqvae_jax.optim`)."""
  if codebook not in CODEBOOKS:
    raise UserError(f'codebook must be one of {", ".join(CODEBOOKS)}, got {codebook!r}')
  x = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
  variables = jax.jit(functools.partial(model.init, train=False))(rng, x)  # jit: one compile
  cb_state = {'unused': jnp.zeros((model.k,), jnp.int32)}
  if codebook == 'ema':
    cb_state['ema_counts'], cb_state['ema_sums'] = quantizer.ema_init(
        variables['params']['codebook'])
  return TrainState.create(apply_fn=model.apply, params=variables['params'],
                           batch_stats=variables['batch_stats'], codebook_state=cb_state,
                           tx=optax.adam(lr) if tx is None else tx
                           ).replace(step=jnp.zeros((), jnp.int32))


def create_prior_state(rng, model: GatedPixelCNN, grid, lr: float, tx=None):
  """Parameters for code grids `grid` (h, w) and the optimiser `tx` (an optax
  transformation; default `optax.adam(lr)`, see `vqvae_jax.optim`)."""
  codes = jnp.zeros((1,) + tuple(grid), jnp.int32)
  params = jax.jit(model.init)(rng, codes, jnp.zeros((1,), jnp.int32))['params']
  return train_state.TrainState.create(
      apply_fn=model.apply, params=params,
      tx=optax.adam(lr) if tx is None else tx).replace(step=jnp.zeros((), jnp.int32))
