"""The optimiser of both stages: Adam(W), a learning-rate schedule, gradient clipping.

Config keys (all optional in saved configs; the defaults give plain Adam):

  lr                 peak learning rate
  lr_schedule        'constant' | 'cosine' | 'linear'
  warmup_steps       linear warm-up from 0 to lr over the first steps
  final_lr_fraction  cosine / linear decay to lr * final_lr_fraction at the last step
  grad_clip          > 0: clip gradients to this global norm first (0 = off)
  weight_decay       > 0: AdamW (decoupled, Loshchilov & Hutter 2019) on kernels only

The schedule, for update t = 0, 1, ... of a run of T updates and W warm-up steps:

  lr(t) = lr * t / W                                   for t < W
  lr(t) = lr * (f + (1 - f) * g(p)),  p = min(1, (t - W) / max(T - W, 1))  otherwise

with g(p) = (1 + cos(pi p)) / 2 (cosine), 1 - p (linear) or 1 (constant). For a
worked example: lr 1e-3, cosine, W = 100, T = 1100, f = 0.1 gives 5e-4 at t = 50,
1e-3 at t = 100, 5.5e-4 at t = 600 and 1e-4 from t = 1100 on.

The constant schedule without warm-up, clipping or weight decay is exactly
`optax.adam(lr)`, whose state tree every checkpoint written before these keys
existed holds; the other recipes add schedule / clip / mask states, so
`structure` names what a checkpoint's optimiser state depends on.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from vqvae_jax.errors import UserError

SCHEDULES = ('constant', 'cosine', 'linear')
# Values for configs saved before a key existed: plain Adam at a constant rate.
DEFAULTS = {'lr_schedule': 'constant', 'warmup_steps': 0, 'final_lr_fraction': 0.0,
            'grad_clip': 0.0, 'weight_decay': 0.0}


def options(config) -> dict:
  """The optimiser keys of `config` (a ConfigDict or dict), defaults filled in."""
  return {k: config.get(k, v) for k, v in DEFAULTS.items()}


def check(config) -> None:
  """UserError for a bad optimiser setting."""
  o = options(config)
  if o['lr_schedule'] not in SCHEDULES:
    raise UserError(f'lr_schedule must be one of {", ".join(SCHEDULES)}, '
                    f'got {o["lr_schedule"]!r}')
  if o['warmup_steps'] < 0 or o['grad_clip'] < 0 or o['weight_decay'] < 0:
    raise UserError('need warmup_steps, grad_clip and weight_decay >= 0, got '
                    f'{o["warmup_steps"]}, {o["grad_clip"]}, {o["weight_decay"]}')
  if not 0.0 <= o['final_lr_fraction'] <= 1.0:
    raise UserError(f'final_lr_fraction must be in [0, 1], got {o["final_lr_fraction"]}')


def schedule(lr: float, kind: str, warmup_steps: int, total_steps: int,
             final_fraction: float = 0.0):
  """The learning rate per update: an optax schedule, count [] int -> [] float32.

  See the module docstring for the formula; total_steps T is the run's length
  (max_steps or num_epochs * steps_per_epoch); steps past T keep the final rate.
  """
  if kind not in SCHEDULES:
    raise ValueError(f'unknown schedule {kind!r}')
  w, t_total, f = int(warmup_steps), int(total_steps), float(final_fraction)

  def fn(count):
    t = jnp.asarray(count, jnp.float32)
    p = jnp.clip((t - w) / max(t_total - w, 1), 0.0, 1.0)
    if kind == 'cosine':
      g = 0.5 * (1.0 + jnp.cos(math.pi * p))
    elif kind == 'linear':
      g = 1.0 - p
    else:
      g = jnp.ones_like(p)
    decayed = f + (1.0 - f) * g if kind != 'constant' else g
    warm = t / w if w > 0 else jnp.ones_like(t)
    return lr * jnp.where(t < w, warm, decayed)

  return fn


def decay_mask(params):
  """True for the leaves weight decay applies to: kernels (ndim >= 2), not the
  codebook (its own update rule), biases or normalisation scales."""
  def keep(path, leaf):
    names = [getattr(k, 'key', getattr(k, 'name', '')) for k in path]
    return jnp.ndim(leaf) >= 2 and 'codebook' not in names
  return jax.tree_util.tree_map_with_path(keep, params)


def make(*, lr: float, total_steps: int, lr_schedule: str = 'constant', warmup_steps: int = 0,
         final_lr_fraction: float = 0.0, grad_clip: float = 0.0,
         weight_decay: float = 0.0) -> optax.GradientTransformation:
  """Adam, or AdamW with `weight_decay` > 0, behind optional global-norm clipping.

  Plain `optax.adam(lr)` for a constant rate without warm-up, clipping or decay.
  """
  plain = lr_schedule == 'constant' and warmup_steps == 0
  rate = lr if plain else schedule(lr, lr_schedule, warmup_steps, total_steps,
                                   final_lr_fraction)
  if weight_decay > 0:
    tx = optax.adamw(rate, weight_decay=weight_decay, mask=decay_mask)
  else:
    tx = optax.adam(rate)
  if grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(grad_clip), tx)
  return tx


def from_config(config, total_steps: int) -> optax.GradientTransformation:
  """`make` with the config's lr and optimiser keys (defaults for older configs)."""
  return make(lr=config.lr, total_steps=total_steps, **options(config))


def structure(config) -> tuple:
  """What the optimiser state tree of `config` depends on (a resume must agree)."""
  o = options(config)
  return (o['lr_schedule'] != 'constant' or o['warmup_steps'] > 0, o['grad_clip'] > 0,
          o['weight_decay'] > 0)


def describe_structure(config) -> str:
  scheduled, clipped, decayed = structure(config)
  return ', '.join([('scheduled' if scheduled else 'constant') + ' lr',
                    'clipped' if clipped else 'no clipping',
                    'AdamW' if decayed else 'Adam'])
