"""Tests of vqvae_jax.models.sampling: determinism, fast sampler == plain sampler."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vqvae_jax.models import sampling
from vqvae_jax.models.prior import GatedPixelCNN

K = 16
MODEL = GatedPixelCNN(num_codes=K, num_classes=3, hidden=8, num_layers=2, head_hidden=16)
LABELS = jnp.array([0, 1, 2, 1, 0], jnp.int32)


@functools.lru_cache(maxsize=None)
def _params():
  codes = jnp.zeros((1, 3, 3), jnp.int32)
  return jax.jit(MODEL.init)(jax.random.key(0), codes, LABELS[:1])['params']


@pytest.mark.parametrize('shape', [(4, 4), (3, 6), (5, 2)])
def test_fast_sampler_equals_plain_sampler(shape):
  params = _params()
  for seed in (0, 1, 2):
    for temperature in (1.0, 0.5, 2.0):
      key = jax.random.key(seed)
      plain = sampling.sample_codes_plain(MODEL, params, LABELS, shape, key, temperature)
      fast = sampling.sample_codes(MODEL, params, LABELS, shape, key, temperature)
      np.testing.assert_array_equal(np.asarray(fast), np.asarray(plain),
                                    err_msg=f'seed {seed}, temperature {temperature}')


def test_incremental_logits_equal_full_pass():
  params = _params()
  codes = jax.random.randint(jax.random.key(7), (LABELS.shape[0], 4, 7), 0, K)
  full = MODEL.apply({'params': params}, codes, LABELS)
  fast = sampling.incremental_logits(MODEL, params, codes, LABELS)
  np.testing.assert_allclose(np.asarray(fast), np.asarray(full), rtol=1e-5, atol=1e-5)


def test_sampling_is_deterministic_for_a_key():
  params = _params()
  a = sampling.sample_codes(MODEL, params, LABELS, (4, 4), jax.random.key(3))
  b = sampling.sample_codes(MODEL, params, LABELS, (4, 4), jax.random.key(3))
  c = sampling.sample_codes(MODEL, params, LABELS, (4, 4), jax.random.key(4))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert (np.asarray(a) != np.asarray(c)).any()
  assert a.shape == (5, 4, 4) and a.dtype == jnp.int32
  assert 0 <= int(a.min()) and int(a.max()) < K


def test_low_temperature_is_nearly_greedy():
  params = _params()
  codes = sampling.sample_codes(MODEL, params, LABELS, (3, 6), jax.random.key(5), 1e-4)
  logits = MODEL.apply({'params': params}, codes, LABELS)
  np.testing.assert_array_equal(np.asarray(codes), np.asarray(logits.argmax(-1)))


def test_bad_arguments_raise():
  params = _params()
  with pytest.raises(ValueError):
    sampling.sample_codes(MODEL, params, LABELS, (4, 4), jax.random.key(0), 0.0)
  with pytest.raises(ValueError):
    sampling.sample_codes(MODEL, params, LABELS[None], (4, 4), jax.random.key(0))
  with pytest.raises(ValueError):
    sampling.sample_codes_plain(MODEL, params, LABELS, (0, 4), jax.random.key(0))
