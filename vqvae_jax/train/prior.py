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
import numpy as np
from jax import lax

from vqvae_jax import checkpoints, data, evaluation, grids, optim, runs
from vqvae_jax.codec import compression
from vqvae_jax.errors import UserError
from vqvae_jax.fileio import atomic_write, make_output_folder, write_json
from vqvae_jax.models.prior import GatedPixelCNN, bits_per_dim, cross_entropy, nll_bits
from vqvae_jax.states import create_prior_state
from vqvae_jax.train.loop import (AXIS, Task, eval_sums, find_resume, fit, replicate,
                                  total_steps, unreplicate, warm_up_eval)

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
    ds = runs.load_split(vq_config, split)
    labels = data.relabel(ds, class_names)
    codes = evaluation.encode_split(model, variables, ds)
    buf = io.BytesIO()
    np.savez(buf, codes=codes, labels=labels, fingerprint=np.asarray(fp))
    atomic_write(path, buf.getvalue())
    out[split] = CodeSet(codes, labels, tuple(class_names))
  return out


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
  totals = eval_sums(rstate, codeset, batch_size, p_eval)
  per_image = float(totals['bits']) / max(float(totals['n']), 1.0)
  per_code = per_image / math.prod(codeset.image_shape)
  return {'loss': per_code * math.log(2.0), 'bits_per_code': per_code,
          'bits_per_dim': float(bits_per_dim(per_image, image_shape))}


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


def train_prior(config, workdir: str, vqvae=None) -> dict:
  """Fits the prior to the codes of the VQ-VAE in `config.model`; returns a summary
  with the test NLL ('test': bits per code, bits per image dimension).

  `vqvae`: that VQ-VAE as `runs.restore_vqvae(config.model)` returns it, if the
  caller restored it already (else restored here).
  """
  if not config.model:
    raise UserError('--model (the VQ-VAE output folder) is required')
  optim.check(config)
  vq_model, vq_vars, vq_meta = vqvae or runs.restore_vqvae(config.model)
  vq_config = runs.run_config(vq_meta, config.data_folder)
  class_names = vq_meta['class_names']
  image_shape = tuple(vq_meta['image_shape'])
  resume = find_resume(workdir, _check_meta(config))  # before the codes are written
  make_output_folder(workdir)  # config.json: written by fit()
  codes = load_codes(vq_config, workdir, vq_model, vq_vars, class_names)
  grid = codes['train'].image_shape
  model = runs.make_prior(config, vq_config.k, len(class_names), training=True)
  eval_prior = runs.make_prior(config, vq_config.k, len(class_names))
  state = create_prior_state(jax.random.key(config.seed), model, grid, config.lr,
                             tx=optim.from_config(config, total_steps(config, codes['train'])))
  p_eval = jax.pmap(functools.partial(prior_eval_step, model=eval_prior), axis_name=AXIS)
  sample_key = jax.random.fold_in(jax.random.key(config.seed), 1)

  def on_epoch_end(rstate, epoch, step):
    del step
    params = unreplicate(rstate.params)
    image = grids.sample_grid(eval_prior, params, vq_model, vq_vars, class_names,
                              config.samples_per_class, grid, jax.random.fold_in(sample_key, epoch),
                              config.temperature)
    grids.save_png(image, os.path.join(workdir, 'samples', f'epoch_{epoch + 1:03d}.png'))

  task = Task(step_fn=functools.partial(prior_train_step, model=model), summarize=summarize,
              evaluate=lambda rs: evaluate(rs, codes['valid'], config.eval_batch_size, p_eval,
                                           image_shape),
              on_epoch_end=on_epoch_end,
              warm_up=lambda rs: warm_up_eval(rs, codes['valid'], config.eval_batch_size, p_eval))
  meta = {'kind': 'prior', 'config': dict(config.to_dict(), model=os.path.abspath(config.model)),
          'class_names': list(class_names), 'grid': list(grid), 'k': vq_config.k,
          'image_shape': list(image_shape),
          'vqvae_fingerprint': checkpoints.vqvae_fingerprint(vq_vars)}
  result = fit(config, workdir, task=task, state=state, train_ds=codes['train'], meta=meta,
               resume=resume)
  # Test NLL of the best checkpoint by validation.
  _, params, best_meta = runs.restore_prior(workdir)
  rstate = replicate(state.replace(params=params))
  result['test'] = evaluate(rstate, codes['test'], config.eval_batch_size, p_eval, image_shape)
  result['test']['step'] = best_meta['step']
  if jax.process_index() == 0:
    write_json(os.path.join(workdir, 'test_metrics.json'), result['test'])
    # The integer copy that codes .vqz files, made once here, where the
    # training codes are, and shipped with the folder.
    compression.load_coder(workdir, eval_prior, params, grid)
  return result
