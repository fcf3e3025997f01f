"""Training the VQ-VAE: losses (eq. 3), pure pmap'd steps, and `train_vqvae`.

loss = ||x - decoder(z_q)||^2 + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2,
each term a mean over elements, images in [-1, 1]. With the EMA codebook
(config `codebook='ema'`, the paper's appendix A.1) the middle term is dropped
and the codebook follows exponential moving averages of the encoder outputs
instead. Either way, `restart_after > 0` re-initialises codes left unused for
that many steps from encoder outputs of the current batch, and `codebook_init`
'data' / 'kmeans' seeds the codebook from the encoder outputs of the first
batches (see `vqvae_jax.quantizer`).
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax import lax

from vqvae_jax import checkpoints, data, grids, optim, quantizer
from vqvae_jax.errors import UserError
from vqvae_jax.fileio import make_output_folder
from vqvae_jax.loop import AXIS, Task, find_resume, fit, total_steps
from vqvae_jax.models import VQVAE

# Config keys a checkpoint must agree on to be resumed or used.
MODEL_KEYS = ('dataset', 'image_size', 'channels', 'hidden_size', 'k', 'seed', 'codebook')
# Values of keys added after the first checkpoints were written (older runs).
_KEY_DEFAULTS = {'codebook': 'loss'}
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
CODEBOOKS = ('loss', 'ema')
CODEBOOK_INITS = ('uniform', 'data', 'kmeans')
MIN_K, MAX_K = 2, 65535  # codebook sizes the .vqz format can store


class TrainState(train_state.TrainState):
  """Adam state + BatchNorm statistics + codebook statistics.

  codebook_state: {'unused': [K] int32 steps since each code was last chosen}
  plus, for the EMA codebook, {'ema_counts': [K], 'ema_sums': [K, D]} float32.
  It changes only in `train_step` and is identical on every replica.
  """
  batch_stats: Any = None
  codebook_state: Any = None


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


def make_model(config, axis_name=None) -> VQVAE:
  if config.precision not in DTYPES:
    raise UserError(f'precision must be one of {", ".join(DTYPES)}, got {config.precision!r}')
  return VQVAE(channels=config.channels, hidden=config.hidden_size, k=config.k,
               axis_name=axis_name, dtype=DTYPES[config.precision])


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


def to_float(images):
  """uint8 [0, 255] -> float32 [-1, 1]."""
  return images.astype(jnp.float32) / 127.5 - 1.0


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
  state, restarts = _update_codebook(state, step, z_e, indices, counts, codebook)
  metrics['counts'] = counts
  metrics['restarts'] = restarts
  return state, metrics


def _update_codebook(state, step, z_e, indices, counts, opts: CodebookOptions):
  """EMA update and dead-code restart, identical on every replica."""
  if state.codebook_state is None:  # a TrainState built without codebook statistics
    if opts.kind != 'loss' or opts.restart_after > 0:
      raise ValueError('the EMA codebook and dead-code restart need '
                       'TrainState.codebook_state (see create_train_state)')
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


def eval_step(state: TrainState, images, mask, *, model: VQVAE, beta: float, ema: bool = False):
  """Sums of per-example losses over the real (mask) examples of all devices."""
  x = to_float(images)
  out = model.apply({'params': state.params, 'batch_stats': state.batch_stats}, x)
  w = mask.astype(jnp.float32)
  recon = jnp.mean(jnp.square(out.x_tilde - x), axis=(1, 2, 3))
  e = jnp.take(state.params['codebook'], out.indices, axis=0)
  vq = jnp.mean(jnp.square(out.z_e.astype(jnp.float32) - e), axis=(1, 2, 3))
  recon01 = recon / 4.0  # the same error with images in [0, 1]
  psnr = 10.0 * jnp.log10(1.0 / jnp.maximum(recon01, 1e-12))
  # The validation loss is the training objective (no codebook term with EMA).
  sums = {'recon': recon, 'codebook': vq, 'loss': recon + ((0.0 if ema else 1.0) + beta) * vq,
          'mse01': recon01, 'psnr': psnr}
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
  if not MIN_K <= config.k <= MAX_K:
    raise UserError(f'k must be between {MIN_K} and {MAX_K} (the .vqz file format stores '
                    f'codes as 16-bit numbers), got {config.k}')
  if config.lr <= 0 or config.beta < 0:
    raise UserError(f'need lr > 0 and beta >= 0, got lr={config.lr}, beta={config.beta}')
  optim.check(config)
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


def load_split(config, split):
  ds = data.load(config.dataset, split, config.data_folder or None,
                 image_size=config.image_size, seed=config.seed, channels=config.channels,
                 skip_corrupt=config.get('skip_corrupt', False),
                 num_frames=config.get('num_frames'))
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
  train_ds, valid_ds, test_ds = (load_split(config, s) for s in ('train', 'valid', 'test'))
  make_output_folder(workdir)  # config.json: written by fit()
  model = make_model(config, axis_name=AXIS)
  tx = optim.from_config(config, total_steps(config, train_ds))
  state = create_train_state(jax.random.key(config.seed), model, train_ds.image_shape, config.lr,
                             codebook=config.codebook, tx=tx)
  eval_model = make_model(config)
  if resume is None:  # a resumed run restores its codebook instead
    state = init_codebook(config, state, eval_model, train_ds)
  ema = config.codebook == 'ema'
  p_eval = jax.pmap(functools.partial(eval_step, model=model, beta=config.beta, ema=ema),
                    axis_name=AXIS)
  recon_images = test_ds.images[:config.num_recon]

  def on_epoch_end(rstate, epoch, step):
    del step
    host = jax.device_get(jax.tree.map(lambda x: x[0], rstate))
    grid = reconstruction_grid(eval_model, {'params': host.params, 'batch_stats': host.batch_stats},
                               recon_images)
    grids.save_png(grid, os.path.join(workdir, 'reconstructions', f'epoch_{epoch + 1:03d}.png'))

  task = Task(step_fn=functools.partial(train_step, model=model, beta=config.beta,
                                       codebook=CodebookOptions.from_config(config)),
              summarize=summarize,
              evaluate=lambda rs: evaluate(rs, valid_ds, config.eval_batch_size, p_eval),
              on_epoch_end=on_epoch_end)
  meta = {'kind': 'vqvae', 'config': config.to_dict(), 'class_names': list(train_ds.class_names),
          'image_shape': list(train_ds.image_shape)}
  return fit(config, workdir, task=task, state=state, train_ds=train_ds, meta=meta,
             resume=resume)


def restore_vqvae(workdir: str, which: str = 'best'):
  """Loads a trained VQ-VAE from an output folder alone.

  Returns (model, variables, meta): an eval-mode `VQVAE`, {'params',
  'batch_stats'}, and the checkpoint's meta (config, class names, ...).
  """
  import ml_collections  # pylint: disable=g-import-not-at-top

  def make_state(meta):
    config = ml_collections.ConfigDict(meta['config'])
    # Inference (evaluation, code extraction, compression) computes in float32,
    # whatever precision the model was trained in.
    model = make_model(config).clone(dtype=jnp.float32)
    # Shapes and dtypes only: tracing init is enough, compiling it is not needed.
    # The optimiser's tree (not its values) must match: any run length will do.
    state = jax.eval_shape(lambda: create_train_state(
        jax.random.key(0), model, tuple(meta['image_shape']), config.lr,
        codebook=config.get('codebook', 'loss'), tx=optim.from_config(config, total_steps=1)))
    return model, state, _sums_template(config.k)

  model, state, meta = checkpoints.restore_run(workdir, 'vqvae', which, make_state)
  return model, {'params': state.params, 'batch_stats': state.batch_stats}, meta


def _sums_template(k):
  z = np.zeros((), np.float32)
  return {'loss': z, 'recon': z, 'codebook': z, 'commitment': z,
          'counts': np.zeros((k,), np.int32), 'restarts': np.zeros((), np.int32)}


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
