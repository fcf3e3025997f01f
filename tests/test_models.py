"""VQ-VAE model: shapes, parameter count, encode/decode, BatchNorm modes, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vqvae_jax.errors import UserError
from vqvae_jax.models.vqvae import VQVAE


@pytest.mark.parametrize('channels,count', [(1, 4_865_793), (3, 4_882_179)])
def test_parameter_count_matches_pytorch_vqvae(channels, count):
  model = VQVAE(channels=channels, hidden=256, k=512)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, channels))))
  assert sum(x.size for x in jax.tree.leaves(shapes['params'])) == count
  assert shapes['params']['codebook'].shape == (512, 256)


def _init(channels=1, hidden=8, k=6, shape=(3, 8, 12)):
  model = VQVAE(channels=channels, hidden=hidden, k=k)
  x = jax.random.uniform(jax.random.key(1), shape + (channels,), minval=-1, maxval=1)
  return model, model.init(jax.random.key(0), x), x


@pytest.mark.parametrize('channels', [1, 3])
def test_shapes_non_square(channels):
  model, variables, x = _init(channels)
  out = model.apply(variables, x)
  assert out.x_tilde.shape == x.shape
  assert out.z_e.shape == (3, 2, 3, 8)
  assert out.indices.shape == (3, 2, 3) and out.indices.dtype == jnp.int32
  assert float(jnp.max(jnp.abs(out.x_tilde))) <= 1.0


def test_codebook_init_range():
  _, variables, _ = _init(k=6)
  cb = np.asarray(variables['params']['codebook'])
  assert np.all(np.abs(cb) <= 1 / 6) and cb.std() > 0


def test_decode_of_encode_is_the_eval_forward_pass():
  model, variables, x = _init()
  # Non-trivial BatchNorm statistics first, so eval mode is not the identity.
  _, upd = model.apply(variables, x * 3 + 0.5, train=True, mutable=['batch_stats'])
  variables = {'params': variables['params'], 'batch_stats': upd['batch_stats']}
  out = model.apply(variables, x)
  idx = model.apply(variables, x, method=VQVAE.encode)
  np.testing.assert_array_equal(np.asarray(idx), np.asarray(out.indices))
  img = model.apply(variables, idx, method=VQVAE.decode)
  np.testing.assert_allclose(np.asarray(img), np.asarray(out.x_tilde), rtol=0, atol=1e-6)


def test_batchnorm_train_vs_eval():
  model, variables, x = _init()
  _, upd = model.apply(variables, x, train=True, mutable=['batch_stats'])
  before = jax.tree.leaves(variables['batch_stats'])
  after = jax.tree.leaves(upd['batch_stats'])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))  # train mode updates stats
  # Eval mode: an example's output does not depend on the rest of the batch.
  full = model.apply(variables, x).x_tilde
  alone = model.apply(variables, x[:1]).x_tilde
  np.testing.assert_allclose(np.asarray(full[:1]), np.asarray(alone), atol=1e-6)
  # Train mode: it does (batch statistics).
  t_full = model.apply(variables, x, train=True, mutable=['batch_stats'])[0].x_tilde
  t_two = model.apply(variables, x[:2], train=True, mutable=['batch_stats'])[0].x_tilde
  assert not np.allclose(np.asarray(t_full[:1]), np.asarray(t_two[:1]), atol=1e-6)


def test_bad_input_is_a_user_error():
  model, variables, x = _init()
  with pytest.raises(UserError, match='1-channel'):
    model.apply(variables, jnp.zeros((1, 8, 8, 3)))
  with pytest.raises(UserError, match='divisible by 4'):
    model.apply(variables, jnp.zeros((1, 10, 8, 1)))
  with pytest.raises(UserError, match=r'\[B, H, W, C\]'):
    model.apply(variables, jnp.zeros((8, 8, 1)))
