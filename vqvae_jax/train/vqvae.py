"""Training the VQ-VAE: losses (eq. 3), pure pmap'd steps, and `train_vqvae`.

loss = ||x - decoder(z_q)||^2 + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2,
each term a mean over elements, images in [-1, 1]. With the EMA codebook
(config `codebook='ema'`, the paper's appendix A.1) the middle term is dropped
and the codebook follows exponential moving averages of the encoder outputs
instead. Either way, `restart_after > 0` re-initialises codes left unused for
that many steps from encoder outputs of the current batch, and `codebook_init`
'data' / 'kmeans' seeds the codebook from the encoder outputs of the first
batches (see `vqvae_jax.models.quantizer`).
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
from jax import lax

from vqvae_jax import data, evaluation, grids, optim, runs
from vqvae_jax.errors import UserError
from vqvae_jax.fileio import make_output_folder
from vqvae_jax.models import quantizer
from vqvae_jax.models.vqvae import VQVAE, to_float
from vqvae_jax.states import TrainState, create_train_state
from vqvae_jax.train import codebook as codebook_lib
from vqvae_jax.train.codebook import CodebookOptions
from vqvae_jax.train.loop import (AXIS, Task, eval_sums, find_resume, fit, total_steps,
                                  unreplicate, warm_up_eval)

# Config keys a checkpoint must agree on to be resumed or used.
MODEL_KEYS = ('dataset', 'image_size', 'channels', 'hidden_size', 'k', 'seed', 'codebook')
# Values of keys added after the first checkpoints were written (older runs).
_KEY_DEFAULTS = {'codebook': 'loss'}
MIN_K, MAX_K = 2, 65535  # codebook sizes the .vqz format can store


def loss_fn(params, batch_stats, images, *, model: VQVAE, beta: float, ema: bool = False):
  """images [b, H, W, C] uint8 -> (loss, (new batch_stats, metrics, indices, z_e)).

  With `ema` the codebook term is reported but left out of the loss.
  """
  x = to_float(images)
  out, updates = model.apply({'params': params, 'batch_stats': batch_stats}, x,
                             train=True, mutable=['batch_stats'])
  recon = jnp.mean(jnp.square(out.x_tilde - x))
  cb, cm = quantizer.vq_losses(out.z_e, params['codebook'], out.indices)
  loss = recon + beta * cm + (0.0 if ema else cb)
  metrics = {'loss': loss, 'recon': recon, 'codebook': cb, 'commitment': cm}
  return loss, (updates['batch_stats'], metrics, out.indices, out.z_e)


def train_step(state: TrainState, images, labels, *, model: VQVAE, beta: float,
               codebook: CodebookOptions = CodebookOptions()):
  """One Adam step on this device's shard; gradients averaged over 'batch'.

  images: [b, H, W, C] uint8 (b = per-device batch), labels unused.
  Returns (state, metrics) with metrics averaged over devices, code counts
  [K] summed over devices and 'restarts' the number of codes restarted.
  """
  del labels
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (_, (batch_stats, metrics, indices, z_e)), grads = grad_fn(
      state.params, state.batch_stats, images, model=model, beta=beta,
      ema=codebook.kind == 'ema')
  grads = lax.pmean(grads, AXIS)
  step = state.step
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  metrics = lax.pmean(metrics, AXIS)
  counts = lax.psum(quantizer.code_counts(indices, model.k), AXIS)
  state, restarts = codebook_lib.update_codebook(state, step, z_e, indices, counts, codebook)
  metrics['counts'] = counts
  metrics['restarts'] = restarts
  return state, metrics


def eval_step(state: TrainState, images, mask, *, model: VQVAE, beta: float, ema: bool = False):
  """Sums of per-example losses over the real (mask) examples of all devices."""
  x = to_float(images)
  out = model.apply({'params': state.params, 'batch_stats': state.batch_stats}, x)
  w = mask.astype(jnp.float32)
  recon = jnp.mean(jnp.square(out.x_tilde - x), axis=(1, 2, 3))
  vq = quantizer.quantization_error(out.z_e, state.params['codebook'], out.indices)
  recon01 = recon / 4.0  # the same error with images in [0, 1]
  # The validation loss is the training objective (no codebook term with EMA).
  sums = {'recon': recon, 'codebook': vq, 'loss': recon + ((0.0 if ema else 1.0) + beta) * vq,
          'mse01': recon01, 'psnr': evaluation.psnr_from_mse(recon01)}
  sums = {k: jnp.sum(v * w) for k, v in sums.items()}
  sums['n'] = jnp.sum(w)
  sums['counts'] = quantizer.code_counts(out.indices, model.k, mask)
  return lax.psum(sums, AXIS)


def summarize(sums: dict, n_steps: int) -> dict:
  """Metric sums over n_steps train steps -> means, codebook usage (perplexity,
  fraction of codes used) and the number of codes restarted over those steps."""
  out = {k: float(v) / n_steps for k, v in sums.items() if k not in ('counts', 'restarts')}
  out.update(quantizer.usage_stats(sums['counts']))
  if 'restarts' in sums:
    out['restarts'] = int(sums['restarts'])
  return out


def evaluate(rstate, ds, batch_size: int, p_eval) -> dict:
  """Mean validation metrics over every example of `ds` (replicated state)."""
  totals = eval_sums(rstate, ds, batch_size,
                     lambda rs, images, labels, mask: p_eval(rs, images, mask))
  n = max(float(totals.pop('n')), 1.0)
  out = {k: float(v) / n for k, v in totals.items() if k != 'counts'}
  out.update(quantizer.usage_stats(totals['counts']))
  return out


def check_config(config) -> None:
  if config.image_size % 4:
    raise UserError(f'image size must be divisible by 4, got {config.image_size}')
  if config.channels not in (1, 3):
    raise UserError(f'channels must be 1 or 3, got {config.channels}')
  for key in ('batch_size', 'num_epochs', 'hidden_size', 'k', 'log_every', 'ckpt_every'):
    if config[key] <= 0:
      raise UserError(f'{key} must be positive, got {config[key]}')
  if not MIN_K <= config.k <= MAX_K:
    raise UserError(f'k must be between {MIN_K} and {MAX_K} (the .vqz file format stores '
                    f'codes as 16-bit numbers), got {config.k}')
  if config.lr <= 0 or config.beta < 0:
    raise UserError(f'need lr > 0 and beta >= 0, got lr={config.lr}, beta={config.beta}')
  optim.check(config)
  codebook_lib.check_config(config)


def _check_meta(config, kind):
  def check(meta):
    saved = meta.get('config', {})
    if meta.get('kind') != kind:
      raise UserError(f'the output folder holds a {meta.get("kind")!r} run, not {kind!r}')
    diff = [f'{k}: saved {saved.get(k, _KEY_DEFAULTS.get(k))!r}, now {config[k]!r}'
            for k in MODEL_KEYS if saved.get(k, _KEY_DEFAULTS.get(k)) != config[k]]
    if optim.structure(saved) != optim.structure(config):
      diff.append(f'optimiser: saved {optim.describe_structure(saved)}, now '
                  f'{optim.describe_structure(config)} (lr_schedule / warmup_steps, '
                  'grad_clip, weight_decay)')
    if diff:
      hint = ''
      if saved.get('codebook', _KEY_DEFAULTS['codebook']) != config['codebook']:
        hint = (f' (a run with the {saved.get("codebook", "loss")!r} codebook, e.g. one from '
                'before EMA became the default: add --codebook '
                f'{saved.get("codebook", "loss")} or use configs/<dataset>.py:paper)')
      raise UserError('the output folder holds a run with another configuration (' +
                      '; '.join(diff) + ')' + hint +
                      ': use a new --output-folder or the same settings')
  return check


def train_vqvae(config, workdir: str) -> dict:
  """Trains (or resumes) a VQ-VAE in `workdir`; returns the final summary."""
  check_config(config)
  resume = find_resume(workdir, _check_meta(config, 'vqvae'))  # before any write
  train_ds, valid_ds, test_ds = (runs.load_split(config, s) for s in ('train', 'valid', 'test'))
  make_output_folder(workdir)  # config.json: written by fit()
  model = runs.make_model(config, axis_name=AXIS)
  tx = optim.from_config(config, total_steps(config, train_ds))
  state = create_train_state(jax.random.key(config.seed), model, train_ds.image_shape, config.lr,
                             codebook=config.codebook, tx=tx)
  eval_model = runs.make_model(config)
  if resume is None:  # a resumed run restores its codebook instead
    state = codebook_lib.init_codebook(config, state, eval_model, train_ds)
  ema = config.codebook == 'ema'
  p_eval = jax.pmap(functools.partial(eval_step, model=model, beta=config.beta, ema=ema),
                    axis_name=AXIS)
  recon_images = test_ds.images[:config.num_recon]

  def on_epoch_end(rstate, epoch, step):
    del step
    host = unreplicate(rstate)
    grid = grids.reconstruction_grid(
        eval_model, {'params': host.params, 'batch_stats': host.batch_stats}, recon_images)
    grids.save_png(grid, os.path.join(workdir, 'reconstructions', f'epoch_{epoch + 1:03d}.png'))

  def warm_up(rstate):  # compile validation and the grid before the first epoch
    warm_up_eval(rstate, valid_ds, config.eval_batch_size,
                 lambda rs, images, labels, mask: p_eval(rs, images, mask))
    if jax.process_index() == 0:
      host = unreplicate(rstate)
      grids.reconstruction_grid(eval_model, {'params': host.params,
                                             'batch_stats': host.batch_stats}, recon_images)

  task = Task(step_fn=functools.partial(train_step, model=model, beta=config.beta,
                                       codebook=CodebookOptions.from_config(config)),
              summarize=summarize,
              evaluate=lambda rs: evaluate(rs, valid_ds, config.eval_batch_size, p_eval),
              on_epoch_end=on_epoch_end, warm_up=warm_up,
              augment=(functools.partial(data.augment, seed=config.seed)
                       if config.get('augment', False) else None))
  meta = {'kind': 'vqvae', 'config': config.to_dict(), 'class_names': list(train_ds.class_names),
          'image_shape': list(train_ds.image_shape)}
  return fit(config, workdir, task=task, state=state, train_ds=train_ds, meta=meta,
             resume=resume)
