"""Training the VQ-VAE: losses (eq. 3), pure pmap'd steps, and `train_vqvae`.

loss = ||x - decoder(z_q)||^2 + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2,
each term a mean over elements, images in [-1, 1].
"""
from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax import lax

from vqvae_jax import data, grids, quantizer
from vqvae_jax.checkpoints import Checkpointer
from vqvae_jax.config_utils import to_json
from vqvae_jax.errors import UserError
from vqvae_jax.fileio import atomic_write
from vqvae_jax.loop import AXIS, Task, fit
from vqvae_jax.models import VQVAE

# Config keys a checkpoint must agree on to be resumed or used.
MODEL_KEYS = ('dataset', 'image_size', 'channels', 'hidden_size', 'k', 'seed')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


class TrainState(train_state.TrainState):
  batch_stats: Any = None


def make_model(config, axis_name=None) -> VQVAE:
  if config.precision not in DTYPES:
    raise UserError(f'precision must be one of {", ".join(DTYPES)}, got {config.precision!r}')
  return VQVAE(channels=config.channels, hidden=config.hidden_size, k=config.k,
               axis_name=axis_name, dtype=DTYPES[config.precision])


def create_train_state(rng, model: VQVAE, image_shape, lr: float) -> TrainState:
  """Initialises parameters, BatchNorm statistics and Adam for images [H, W, C]."""
  variables = model.init(rng, jnp.zeros((1,) + tuple(image_shape), jnp.float32), train=False)
  return TrainState.create(apply_fn=model.apply, params=variables['params'],
                           batch_stats=variables['batch_stats'],
                           tx=optax.adam(lr)).replace(step=jnp.zeros((), jnp.int32))


def to_float(images):
  """uint8 [0, 255] -> float32 [-1, 1]."""
  return images.astype(jnp.float32) / 127.5 - 1.0


def loss_fn(params, batch_stats, images, *, model: VQVAE, beta: float):
  """images [b, H, W, C] uint8 -> (loss, (new batch_stats, metrics, indices))."""
  x = to_float(images)
  out, updates = model.apply({'params': params, 'batch_stats': batch_stats}, x,
                             train=True, mutable=['batch_stats'])
  recon = jnp.mean(jnp.square(out.x_tilde - x))
  cb, cm = quantizer.vq_losses(out.z_e, params['codebook'], out.indices)
  loss = recon + cb + beta * cm
  metrics = {'loss': loss, 'recon': recon, 'codebook': cb, 'commitment': cm}
  return loss, (updates['batch_stats'], metrics, out.indices)


def train_step(state: TrainState, images, labels, *, model: VQVAE, beta: float):
  """One Adam step on this device's shard; gradients averaged over 'batch'.

  images: [b, H, W, C] uint8 (b = per-device batch), labels unused.
  Returns (state, metrics) with metrics averaged over devices and code counts
  [K] summed over devices.
  """
  del labels
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (_, (batch_stats, metrics, indices)), grads = grad_fn(
      state.params, state.batch_stats, images, model=model, beta=beta)
  grads = lax.pmean(grads, AXIS)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  metrics = lax.pmean(metrics, AXIS)
  metrics['counts'] = lax.psum(quantizer.code_counts(indices, model.k), AXIS)
  return state, metrics


def eval_step(state: TrainState, images, mask, *, model: VQVAE, beta: float):
  """Sums of per-example losses over the real (mask) examples of all devices."""
  x = to_float(images)
  out = model.apply({'params': state.params, 'batch_stats': state.batch_stats}, x)
  w = mask.astype(jnp.float32)
  recon = jnp.mean(jnp.square(out.x_tilde - x), axis=(1, 2, 3))
  e = jnp.take(state.params['codebook'], out.indices, axis=0)
  vq = jnp.mean(jnp.square(out.z_e.astype(jnp.float32) - e), axis=(1, 2, 3))
  recon01 = recon / 4.0  # the same error with images in [0, 1]
  psnr = 10.0 * jnp.log10(1.0 / jnp.maximum(recon01, 1e-12))
  sums = {'recon': recon, 'codebook': vq, 'loss': recon + (1.0 + beta) * vq,
          'mse01': recon01, 'psnr': psnr}
  sums = {k: jnp.sum(v * w) for k, v in sums.items()}
  sums['n'] = jnp.sum(w)
  sums['counts'] = quantizer.code_counts(out.indices, model.k, mask)
  return lax.psum(sums, AXIS)


def summarize(sums: dict, n_steps: int) -> dict:
  """Metric sums over n_steps train steps -> means + codebook usage."""
  out = {k: float(v) / n_steps for k, v in sums.items() if k != 'counts'}
  out.update(quantizer.usage_stats(sums['counts']))
  return out


def evaluate(rstate, ds, batch_size: int, p_eval) -> dict:
  """Mean validation metrics over every example of `ds` (replicated state)."""
  totals = None
  for images, _, mask in data.prefetch_to_device(data.eval_batches(
      ds, batch_size, process_index=jax.process_index(),
      process_count=jax.process_count())):
    sums = p_eval(rstate, images, mask)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(jax.tree.map(lambda x: x[0], totals))
  n = max(float(totals.pop('n')), 1.0)
  out = {k: float(v) / n for k, v in totals.items() if k != 'counts'}
  out.update(quantizer.usage_stats(totals['counts']))
  return out


def reconstruction_grid(model, variables, images_u8) -> np.ndarray:
  """Originals (top half) over reconstructions (bottom half): uint8 grid image."""
  recon = jax.jit(lambda v, x: model.apply(v, to_float(x)).x_tilde)(variables, images_u8)
  both = np.concatenate([np.asarray(images_u8), grids.to_uint8(recon)])
  return grids.make_grid(both, ncol=max(1, len(images_u8) // 4))


def check_config(config) -> None:
  if config.image_size % 4:
    raise UserError(f'image size must be divisible by 4, got {config.image_size}')
  if config.channels not in (1, 3):
    raise UserError(f'channels must be 1 or 3, got {config.channels}')
  for key in ('batch_size', 'num_epochs', 'hidden_size', 'k', 'log_every', 'ckpt_every'):
    if config[key] <= 0:
      raise UserError(f'{key} must be positive, got {config[key]}')
  if config.lr <= 0 or config.beta < 0:
    raise UserError(f'need lr > 0 and beta >= 0, got lr={config.lr}, beta={config.beta}')


def load_split(config, split):
  ds = data.load(config.dataset, split, config.data_folder or None,
                 image_size=config.image_size, seed=config.seed)
  want = (config.image_size, config.image_size, config.channels)
  if ds.image_shape != want:
    raise UserError(f'{config.dataset} {split} images are {ds.image_shape}, but the config '
                    f'expects {want}: set image_size / channels to match')
  return ds


def _check_meta(config, kind):
  def check(meta):
    saved = meta.get('config', {})
    if meta.get('kind') != kind:
      raise UserError(f'the output folder holds a {meta.get("kind")!r} run, not {kind!r}')
    diff = [f'{k}: saved {saved.get(k)!r}, now {config[k]!r}'
            for k in MODEL_KEYS if saved.get(k) != config[k]]
    if diff:
      raise UserError('the output folder holds a run with another configuration (' +
                      '; '.join(diff) + '): use a new --output-folder or the same settings')
  return check


def train_vqvae(config, workdir: str) -> dict:
  """Trains (or resumes) a VQ-VAE in `workdir`; returns the final summary."""
  check_config(config)
  train_ds, valid_ds, test_ds = (load_split(config, s) for s in ('train', 'valid', 'test'))
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    atomic_write(os.path.join(workdir, 'config.json'), to_json(config) + '\n')
  model = make_model(config, axis_name=AXIS)
  state = create_train_state(jax.random.key(config.seed), model, train_ds.image_shape, config.lr)
  p_eval = jax.pmap(functools.partial(eval_step, model=model, beta=config.beta), axis_name=AXIS)
  recon_images = test_ds.images[:config.num_recon]
  eval_model = make_model(config)

  def on_epoch_end(rstate, epoch, step):
    del step
    host = jax.device_get(jax.tree.map(lambda x: x[0], rstate))
    grid = reconstruction_grid(eval_model, {'params': host.params, 'batch_stats': host.batch_stats},
                               recon_images)
    grids.save_png(grid, os.path.join(workdir, 'reconstructions', f'epoch_{epoch + 1:03d}.png'))

  task = Task(step_fn=functools.partial(train_step, model=model, beta=config.beta),
              summarize=summarize,
              evaluate=lambda rs: evaluate(rs, valid_ds, config.eval_batch_size, p_eval),
              on_epoch_end=on_epoch_end)
  meta = {'kind': 'vqvae', 'config': config.to_dict(), 'class_names': list(train_ds.class_names),
          'image_shape': list(train_ds.image_shape)}
  return fit(config, workdir, task=task, state=state, train_ds=train_ds, meta=meta,
             check_meta=_check_meta(config, 'vqvae'))


def restore_vqvae(workdir: str, which: str = 'best'):
  """Loads a trained VQ-VAE from an output folder alone.

  Returns (model, variables, meta): an eval-mode `VQVAE`, {'params',
  'batch_stats'}, and the checkpoint's meta (config, class names, ...).
  """
  ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'), read_only=True)
  step = (ckpt.best_step() if which == 'best' else None) or ckpt.latest_step()
  if step is None:
    raise UserError(f'no checkpoint in {workdir}/checkpoints: train a VQ-VAE there first')
  meta = ckpt.restore_meta(step)
  if meta.get('kind') != 'vqvae':
    raise UserError(f'{workdir} does not hold a VQ-VAE (kind {meta.get("kind")!r})')
  import ml_collections  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(meta['config'])
  model = make_model(config)
  state = create_train_state(jax.random.key(0), model, tuple(meta['image_shape']), config.lr)
  import flax.serialization  # pylint: disable=g-import-not-at-top
  template = {'state': flax.serialization.to_state_dict(state),
              'epoch_sums': _sums_template(config.k)}
  saved, _ = ckpt.restore(step, template)
  ckpt.close()
  state = flax.serialization.from_state_dict(state, saved['state'])
  return model, {'params': state.params, 'batch_stats': state.batch_stats}, meta


def _sums_template(k):
  z = np.zeros((), np.float32)
  return {'loss': z, 'recon': z, 'codebook': z, 'commitment': z,
          'counts': np.zeros((k,), np.int32)}
