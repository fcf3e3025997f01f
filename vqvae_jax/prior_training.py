"""Training the class-conditional Gated PixelCNN prior on a VQ-VAE's codes.

Stage II of VQ-VAE: the codes of train / valid / test are extracted once with a
jitted encoder and cached in the prior's output folder, then the prior is fitted
by maximum likelihood with the same loop (checkpoints, resume, logging) as the
VQ-VAE.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state
from jax import lax

from vqvae_jax import checkpoints, data, grids, optim, sampling
from vqvae_jax.errors import UserError
from vqvae_jax.fileio import atomic_write, make_output_folder, write_json
from vqvae_jax.loop import AXIS, Task, find_resume, fit, replicate, total_steps
from vqvae_jax.models import VQVAE
from vqvae_jax.prior import GatedPixelCNN, bits_per_dim, cross_entropy, nll_bits
from vqvae_jax.training import DTYPES, load_split, restore_vqvae, to_float

PRIOR_KEYS = ('hidden_size_prior', 'num_layers', 'seed')


@dataclasses.dataclass(frozen=True)
class CodeSet:
  """One split's code grids: images [N, h, w] int32 codes, labels [N] int32."""
  images: np.ndarray
  labels: np.ndarray
  class_names: tuple

  def __len__(self):
    return len(self.labels)

  @property
  def image_shape(self):
    return tuple(self.images.shape[1:])


def extract_codes(model: VQVAE, variables, ds, batch_size: int = 256) -> np.ndarray:
  """Encodes every image of `ds`: -> codes [N, H/4, W/4] int32 (eval mode)."""
  encode = jax.jit(lambda v, x: model.apply(v, to_float(x), method=VQVAE.encode))
  out = []
  for images, _, mask in data.eval_batches(ds, batch_size):
    out.append(np.asarray(encode(variables, images))[mask])
  return np.concatenate(out).astype(np.int32)


def load_codes(vq_config, workdir, model, variables, class_names) -> dict:
  """{split: CodeSet}, extracted once and cached in `<workdir>/codes/<split>.npz`."""
  fp = checkpoints.vqvae_fingerprint(variables)
  out = {}
  for split in ('train', 'valid', 'test'):
    path = os.path.join(workdir, 'codes', f'{split}.npz')
    if os.path.exists(path):
      with np.load(path) as f:
        if str(f['fingerprint']) == fp:
          out[split] = CodeSet(f['codes'], f['labels'], tuple(class_names))
          continue
    ds = load_split(vq_config, split)
    labels = data.relabel(ds, class_names)
    codes = extract_codes(model, variables, ds)
    buf = io.BytesIO()
    np.savez(buf, codes=codes, labels=labels, fingerprint=np.asarray(fp))
    atomic_write(path, buf.getvalue())
    out[split] = CodeSet(codes, labels, tuple(class_names))
  return out


def make_prior(config, k: int, num_classes: int, training: bool = False) -> GatedPixelCNN:
  """The prior of `config`; `config.precision` applies to training only (sampling and
  compression always compute in float32, so results do not depend on it)."""
  if config.precision not in DTYPES:
    raise UserError(f'precision must be one of {", ".join(DTYPES)}, got {config.precision!r}')
  return GatedPixelCNN(num_codes=k, num_classes=num_classes,
                       hidden=config.hidden_size_prior, num_layers=config.num_layers,
                       dtype=DTYPES[config.precision] if training else jnp.float32)


def create_prior_state(rng, model: GatedPixelCNN, grid, lr: float, tx=None):
  """Parameters for code grids `grid` (h, w) and the optimiser `tx` (an optax
  transformation; default `optax.adam(lr)`, see `vqvae_jax.optim`)."""
  codes = jnp.zeros((1,) + tuple(grid), jnp.int32)
  params = jax.jit(model.init)(rng, codes, jnp.zeros((1,), jnp.int32))['params']
  return train_state.TrainState.create(
      apply_fn=model.apply, params=params,
      tx=optax.adam(lr) if tx is None else tx).replace(step=jnp.zeros((), jnp.int32))


def prior_train_step(state, codes, labels, *, model: GatedPixelCNN):
  """codes [b, h, w] int32, labels [b] -> (state, {'loss': nats per code})."""
  def loss_fn(params):
    return cross_entropy(model.apply({'params': params}, codes, labels), codes)

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  state = state.apply_gradients(grads=lax.pmean(grads, AXIS))
  return state, {'loss': lax.pmean(loss, AXIS)}


def prior_eval_step(state, codes, labels, mask, *, model: GatedPixelCNN):
  bits = nll_bits(model.apply({'params': state.params}, codes, labels), codes)
  w = mask.astype(jnp.float32)
  return lax.psum({'bits': jnp.sum(bits * w), 'n': jnp.sum(w)}, AXIS)


def summarize(sums, n_steps):
  loss = float(sums['loss']) / n_steps
  return {'loss': loss, 'bits_per_code': loss / math.log(2.0)}


def evaluate(rstate, codeset, batch_size, p_eval, image_shape) -> dict:
  """NLL of every grid in `codeset`: nats and bits per code, bits per image dim."""
  totals = None
  for codes, labels, mask in data.prefetch_to_device(data.eval_batches(
      codeset, batch_size, process_index=jax.process_index(),
      process_count=jax.process_count())):
    sums = p_eval(rstate, codes, labels, mask)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(jax.tree.map(lambda x: x[0], totals))
  per_image = float(totals['bits']) / max(float(totals['n']), 1.0)
  per_code = per_image / math.prod(codeset.image_shape)
  return {'loss': per_code * math.log(2.0), 'bits_per_code': per_code,
          'bits_per_dim': float(bits_per_dim(per_image, image_shape))}


def sample_images(prior, prior_params, vq_model, vq_variables, num_classes, per_class, grid,
                  key, temperature=1.0):
  """`per_class` decoded samples of each class, class by class.

  Returns (images [num_classes * per_class, H, W, C] uint8, labels [same] int32
  = [0] * per_class + [1] * per_class + ...); codes [.., h, w] come from
  `sampling.sample_codes` with `key`, so the same key gives the same images.
  """
  labels = jnp.repeat(jnp.arange(num_classes, dtype=jnp.int32), per_class)
  codes = sampling.sample_codes(prior, prior_params, labels, tuple(grid), key, temperature)
  images = jax.jit(lambda v, c: vq_model.apply(v, c, method=VQVAE.decode))(vq_variables, codes)
  return grids.to_uint8(images), np.asarray(labels)


def labelled_grid(images, class_names, per_class) -> np.ndarray:
  """`sample_images`' images -> one labelled row per class: uint8 [H', W', 3]."""
  image = grids.make_grid(images, ncol=per_class)
  return grids.label_rows(image, class_names, row_height=images.shape[1] + 2)


def sample_grid(prior, prior_params, vq_model, vq_variables, class_names, per_class, grid,
                key, temperature=1.0) -> np.ndarray:
  """One row per class of decoded samples, labelled: uint8 [H', W', 3]."""
  images, _ = sample_images(prior, prior_params, vq_model, vq_variables, len(class_names),
                            per_class, grid, key, temperature)
  return labelled_grid(images, class_names, per_class)


def _check_meta(config):
  def check(meta):
    saved = meta.get('config', {})
    if meta.get('kind') != 'prior':
      raise UserError(f'the output folder holds a {meta.get("kind")!r} run, not a prior')
    diff = [f'{k}: saved {saved.get(k)!r}, now {config[k]!r}'
            for k in PRIOR_KEYS if saved.get(k) != config[k]]
    if optim.structure(saved) != optim.structure(config):
      diff.append(f'optimiser: saved {optim.describe_structure(saved)}, now '
                  f'{optim.describe_structure(config)}')
    if os.path.abspath(saved.get('model', '')) != os.path.abspath(config.model):
      diff.append(f'model: saved {saved.get("model")!r}, now {config.model!r}')
    if diff:
      raise UserError('the output folder holds a prior with another configuration (' +
                      '; '.join(diff) + '): use a new --output-folder or the same settings')
  return check


def _vq_config(vq_meta, data_folder):
  config = ml_collections.ConfigDict(vq_meta['config'])
  if data_folder:
    config.data_folder = data_folder
  return config


def train_prior(config, workdir: str) -> dict:
  """Fits the prior to the codes of the VQ-VAE in `config.model`; returns a summary
  with the test NLL ('test': bits per code, bits per image dimension)."""
  if not config.model:
    raise UserError('--model (the VQ-VAE output folder) is required')
  optim.check(config)
  vq_model, vq_vars, vq_meta = restore_vqvae(config.model)
  vq_config = _vq_config(vq_meta, config.data_folder)
  class_names = vq_meta['class_names']
  image_shape = tuple(vq_meta['image_shape'])
  resume = find_resume(workdir, _check_meta(config))  # before the codes are written
  make_output_folder(workdir)  # config.json: written by fit()
  codes = load_codes(vq_config, workdir, vq_model, vq_vars, class_names)
  grid = codes['train'].image_shape
  model = make_prior(config, vq_config.k, len(class_names), training=True)
  eval_prior = make_prior(config, vq_config.k, len(class_names))
  state = create_prior_state(jax.random.key(config.seed), model, grid, config.lr,
                             tx=optim.from_config(config, total_steps(config, codes['train'])))
  p_eval = jax.pmap(functools.partial(prior_eval_step, model=eval_prior), axis_name=AXIS)
  sample_key = jax.random.fold_in(jax.random.key(config.seed), 1)

  def on_epoch_end(rstate, epoch, step):
    del step
    params = jax.device_get(jax.tree.map(lambda x: x[0], rstate.params))
    image = sample_grid(eval_prior, params, vq_model, vq_vars, class_names, config.samples_per_class,
                        grid, jax.random.fold_in(sample_key, epoch), config.temperature)
    grids.save_png(image, os.path.join(workdir, 'samples', f'epoch_{epoch + 1:03d}.png'))

  task = Task(step_fn=functools.partial(prior_train_step, model=model), summarize=summarize,
              evaluate=lambda rs: evaluate(rs, codes['valid'], config.eval_batch_size, p_eval,
                                           image_shape),
              on_epoch_end=on_epoch_end)
  meta = {'kind': 'prior', 'config': dict(config.to_dict(), model=os.path.abspath(config.model)),
          'class_names': list(class_names), 'grid': list(grid), 'k': vq_config.k,
          'image_shape': list(image_shape),
          'vqvae_fingerprint': checkpoints.vqvae_fingerprint(vq_vars)}
  result = fit(config, workdir, task=task, state=state, train_ds=codes['train'], meta=meta,
               resume=resume)
  # Test NLL of the best checkpoint by validation.
  _, params, best_meta = restore_prior(workdir)
  rstate = replicate(state.replace(params=params))
  result['test'] = evaluate(rstate, codes['test'], config.eval_batch_size, p_eval, image_shape)
  result['test']['step'] = best_meta['step']
  if jax.process_index() == 0:
    write_json(os.path.join(workdir, 'test_metrics.json'), result['test'])
    # The integer copy that codes .vqz files, made once here, where the
    # training codes are, and shipped with the folder.
    from vqvae_jax import compression  # pylint: disable=g-import-not-at-top
    compression.load_coder(workdir, eval_prior, params, grid)
  return result


def restore_prior(workdir: str, which: str = 'best'):
  """(GatedPixelCNN, params, meta) from a prior output folder alone."""
  def make_state(meta):
    config = ml_collections.ConfigDict(meta['config'])
    model = make_prior(config, meta['k'], len(meta['class_names']))
    # Shapes and dtypes only: tracing init is enough, compiling it is not needed.
    state = jax.eval_shape(lambda: create_prior_state(
        jax.random.key(0), model, meta['grid'], config.lr,
        tx=optim.from_config(config, total_steps=1)))
    return model, state, {'loss': np.zeros((), np.float32)}

  model, state, meta = checkpoints.restore_run(workdir, 'prior', which, make_state)
  return model, state.params, meta
