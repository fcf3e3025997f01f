"""--precision bfloat16: float32 parameters, finite training close to float32."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vqvae_jax import runs, states
from vqvae_jax.cli.config_files import load_config, override
from vqvae_jax.train import prior as prior_training, vqvae as vqvae_training
from vqvae_jax.train.loop import AXIS, replicate


def _images(n, seed=0):
  rng = np.random.default_rng(seed)
  x = np.full((n, 8, 8, 1), 30, np.uint8)
  for i in range(n):
    r, c = rng.integers(0, 5, 2)
    x[i, r:r + 3, c:c + 3] = 220
  return x


def _vq_losses(precision, steps=6):
  config = load_config('mnist:tiny')
  override(config, 'precision', precision)
  model = runs.make_model(config, axis_name=AXIS)
  state = states.create_train_state(jax.random.key(0), model, (8, 8, 1), 1e-3)
  devices = jax.local_devices()[:1]
  step = jax.pmap(functools.partial(vqvae_training.train_step, model=model, beta=1.0),
                  axis_name=AXIS, devices=devices)
  rstate = replicate(state, devices)
  losses = []
  for s in range(steps):
    x = _images(8, seed=s)[None]
    rstate, m = step(rstate, x, np.zeros((1, 8), np.int32))
    losses.append(float(m['recon'][0]))
  return losses, rstate


def test_vqvae_bfloat16_training_is_finite_and_close_to_float32():
  f32, _ = _vq_losses('float32')
  bf16, rstate = _vq_losses('bfloat16')
  assert np.all(np.isfinite(bf16))
  # bfloat16 has 8 bits of mantissa: the reconstruction error agrees to a few percent.
  np.testing.assert_allclose(bf16, f32, rtol=0.05)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(rstate.params))
  # and it computes in bfloat16 (the encoder output dtype)
  config = load_config('mnist:tiny')
  override(config, 'precision', 'bfloat16')
  model = runs.make_model(config)
  variables = {'params': jax.tree.map(lambda x: x[0], rstate.params),
               'batch_stats': jax.tree.map(lambda x: x[0], rstate.batch_stats)}
  out = model.apply(variables, jnp.zeros((1, 8, 8, 1)))
  assert out.z_e.dtype == jnp.bfloat16 and out.x_tilde.dtype == jnp.float32


def test_prior_bfloat16_training_is_finite_and_close_to_float32():
  codes = jax.random.randint(jax.random.key(1), (8, 5, 5), 0, 16)
  codes = (codes // 4) * 4  # some structure to learn
  labels = jnp.arange(8) % 3
  out = {}
  for precision in ('float32', 'bfloat16'):
    config = load_config('prior:tiny')
    override(config, 'precision', precision)
    model = runs.make_prior(config, 16, 3, training=True)
    state = states.create_prior_state(jax.random.key(0), model, (5, 5), 3e-3)
    devices = jax.local_devices()[:1]
    step = jax.pmap(functools.partial(prior_training.prior_train_step, model=model),
                    axis_name=AXIS, devices=devices)
    rstate = replicate(state, devices)
    losses = []
    for _ in range(8):
      rstate, m = step(rstate, codes[None], labels[None])
      losses.append(float(m['loss'][0]))
    out[precision] = losses
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(rstate.params))
  assert np.all(np.isfinite(out['bfloat16']))
  np.testing.assert_allclose(out['bfloat16'], out['float32'], rtol=0.03)
  assert out['bfloat16'][-1] < out['bfloat16'][0]


def test_unknown_precision_is_a_user_error():
  from vqvae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  config = load_config('prior:tiny')
  override(config, 'precision', 'float16')
  with pytest.raises(UserError, match='precision must be one of'):
    runs.make_prior(config, 16, 3)


def test_bfloat16_trained_vqvae_restores_for_float32_inference(tmp_path, monkeypatch):
  """Trained in bfloat16 (the config says so), restored from the folder alone:
  parameters are float32 and inference (codes, evaluation, compression)
  computes in float32."""
  from fixtures import write_mnist_folder  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv('VQVAE_CACHE_DIR', str(tmp_path / 'cache'))
  write_mnist_folder(str(tmp_path / 'mnist'), n_train=40, n_test=10)
  config = load_config('mnist:tiny')
  for key, value in [('data_folder', str(tmp_path / 'mnist')), ('max_steps', 2),
                     ('precision', 'bfloat16')]:
    override(config, key, value)
  vqvae_training.train_vqvae(config, str(tmp_path / 'vq'))
  model, variables, meta = runs.restore_vqvae(str(tmp_path / 'vq'), which='latest')
  assert meta['config']['precision'] == 'bfloat16'
  assert model.dtype == jnp.float32
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
  x = jnp.zeros((2, 28, 28, 1))
  out = model.apply(variables, x)
  assert out.z_e.dtype == jnp.float32
  np.testing.assert_array_equal(model.apply(variables, x, method=model.encode), out.indices)
