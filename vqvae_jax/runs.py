"""A trained run folder: its model, its restored state, its config and its data.

A run folder is what `train_vqvae.py` or `train_prior.py` wrote (checkpoints
with their meta: config, class names, image shape, ...) or a `pretrained/`
folder (`vqvae_jax.pretrained`). Everything that uses a trained model
(evaluation, sampling, the codec, the public API, the prior's trainer) gets it
from here, never from the trainers:

    model, variables, meta = runs.restore_vqvae('out/fashion-mnist')
    config = runs.run_config(meta)                 # the run's ConfigDict
    test = runs.load_split(config, 'test')         # the data set it was trained on
    prior, params, prior_meta = runs.restore_prior('out/fashion-mnist-prior')
    runs.check_prior_matches(prior_meta, variables, 'out/...-prior', 'out/...')

Inference computes in float32 whatever precision the run was trained in.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vqvae_jax import checkpoints, data, optim, pretrained, states
from vqvae_jax.errors import UserError
from vqvae_jax.models.prior import GatedPixelCNN
from vqvae_jax.models.vqvae import VQVAE

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def run_config(meta: dict, data_folder: str | None = None) -> ml_collections.ConfigDict:
  """The training run's config from a checkpoint's meta, optionally another data folder."""
  config = ml_collections.ConfigDict(meta['config'])
  if data_folder:
    config.data_folder = data_folder
  return config


def _dtype(config):
  if config.precision not in DTYPES:
    raise UserError(f'precision must be one of {", ".join(DTYPES)}, got {config.precision!r}')
  return DTYPES[config.precision]


def make_model(config, axis_name=None) -> VQVAE:
  """The VQ-VAE of a run's `config`, computing in `config.precision`."""
  return VQVAE(channels=config.channels, hidden=config.hidden_size, k=config.k,
               axis_name=axis_name, dtype=_dtype(config))


def make_prior(config, k: int, num_classes: int, training: bool = False) -> GatedPixelCNN:
  """The prior of `config`; `config.precision` applies to training only (sampling and
  compression always compute in float32, so results do not depend on it)."""
  dtype = _dtype(config)
  return GatedPixelCNN(num_codes=k, num_classes=num_classes,
                       hidden=config.hidden_size_prior, num_layers=config.num_layers,
                       dtype=dtype if training else jnp.float32)


def load_split(config, split: str) -> data.Dataset:
  """The `split` of the data set of a VQ-VAE run's `config`, checked against its shape."""
  ds = data.load(config.dataset, split, config.data_folder or None,
                 image_size=config.image_size, seed=config.seed, channels=config.channels,
                 skip_corrupt=config.get('skip_corrupt', False),
                 num_frames=config.get('num_frames'))
  want = (config.image_size, config.image_size, config.channels)
  if ds.image_shape != want:
    raise UserError(f'{config.dataset} {split} images are {ds.image_shape}, but the config '
                    f'expects {want}: set image_size / channels to match')
  return ds


def folder_kind(folder: str) -> str:
  """'vqvae' or 'prior': what a run or pretrained folder holds."""
  if pretrained.is_pretrained(folder):
    return pretrained.read_record(folder)['kind']
  ckpt = checkpoints.Checkpointer(os.path.join(folder, 'checkpoints'), read_only=True)
  try:
    steps = ckpt.all_steps()
    if not steps:
      raise UserError(f'{folder} holds no trained model (no checkpoint, no {pretrained.MODEL_FILE})')
    return ckpt.restore_meta(max(steps)).get('kind')
  finally:
    ckpt.close()


def _restore(workdir: str, kind: str, which: str, make_state):
  """`checkpoints.restore_run` for a run folder, `pretrained.restore` for a
  pretrained one (its inference fields only)."""
  if pretrained.is_pretrained(workdir):
    return pretrained.restore(workdir, kind, make_state)
  return checkpoints.restore_run(workdir, kind, which, make_state)


def vqvae_sums_template(k: int) -> dict:
  """The VQ-VAE trainer's metric sums, as saved with each checkpoint: zeros."""
  z = np.zeros((), np.float32)
  return {'loss': z, 'recon': z, 'codebook': z, 'commitment': z,
          'counts': np.zeros((k,), np.int32), 'restarts': np.zeros((), np.int32)}


def restore_vqvae(workdir: str, which: str = 'best'):
  """Loads a trained VQ-VAE from an output folder alone.

  Returns (model, variables, meta): an eval-mode float32 `VQVAE`, {'params',
  'batch_stats'}, and the checkpoint's meta (config, class names, ...).
  `which`: 'best' (by validation loss, the latest if none) or 'latest'.
  """
  def make_state(meta):
    config = run_config(meta)
    # Inference (evaluation, code extraction, compression) computes in float32,
    # whatever precision the model was trained in.
    model = make_model(config).clone(dtype=jnp.float32)
    # Shapes and dtypes only: tracing init is enough, compiling it is not needed.
    # The optimiser's tree (not its values) must match: any run length will do.
    state = jax.eval_shape(lambda: states.create_train_state(
        jax.random.key(0), model, tuple(meta['image_shape']), config.lr,
        codebook=config.get('codebook', 'loss'), tx=optim.from_config(config, total_steps=1)))
    return model, state, vqvae_sums_template(config.k)

  model, state, meta = _restore(workdir, 'vqvae', which, make_state)
  return model, {'params': state.params, 'batch_stats': state.batch_stats}, meta


def restore_prior(workdir: str, which: str = 'best'):
  """(GatedPixelCNN, params, meta) from a prior output folder alone; meta holds
  the prior's 'grid' (h, w), 'k', 'class_names' and its VQ-VAE's folder
  (meta['config']['model']) and 'vqvae_fingerprint'."""
  def make_state(meta):
    config = run_config(meta)
    model = make_prior(config, meta['k'], len(meta['class_names']))
    # Shapes and dtypes only: tracing init is enough, compiling it is not needed.
    state = jax.eval_shape(lambda: states.create_prior_state(
        jax.random.key(0), model, meta['grid'], config.lr,
        tx=optim.from_config(config, total_steps=1)))
    return model, state, {'loss': np.zeros((), np.float32)}

  model, state, meta = _restore(workdir, 'prior', which, make_state)
  return model, state.params, meta


def check_prior_matches(prior_meta: dict, vq_variables, prior_dir: str, model_dir: str) -> None:
  """UserError unless the prior of `prior_meta` was fitted to the codes of the
  VQ-VAE with parameters `vq_variables` (its recorded fingerprint)."""
  if prior_meta.get('vqvae_fingerprint') != checkpoints.vqvae_fingerprint(vq_variables):
    raise UserError(f'the prior in {prior_dir} was trained on another VQ-VAE than the one in '
                    f'{model_dir}: pass the --model it was trained on')

