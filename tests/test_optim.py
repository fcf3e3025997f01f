"""Learning-rate schedules, clipping and weight decay against NumPy / optax references."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vqvae_jax import optim
from vqvae_jax.cli.config_files import load_config, override
from vqvae_jax.errors import UserError


def _np_schedule(t, lr, kind, w, total, f):
  """The module docstring's formula, written independently with math."""
  if t < w:
    return lr * t / w
  p = min(1.0, (t - w) / max(total - w, 1))
  g = {'cosine': (1 + math.cos(math.pi * p)) / 2, 'linear': 1 - p, 'constant': 1.0}[kind]
  return lr * (g if kind == 'constant' else f + (1 - f) * g)


@pytest.mark.parametrize('kind', optim.SCHEDULES)
@pytest.mark.parametrize('warmup', [0, 100])
def test_schedule_matches_the_formula(kind, warmup):
  fn = optim.schedule(1e-3, kind, warmup, 1100, 0.1)
  for t in (0, 1, 50, 99, 100, 101, 350, 600, 1099, 1100, 5000):
    assert float(fn(t)) == pytest.approx(_np_schedule(t, 1e-3, kind, warmup, 1100, 0.1),
                                         rel=1e-5, abs=1e-12), t


def test_cosine_matches_optax_and_the_worked_example():
  fn = optim.schedule(1e-3, 'cosine', 100, 1100, 0.1)
  ref = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 1100, end_value=1e-4)
  for t in range(0, 1300, 37):
    assert float(fn(t)) == pytest.approx(float(ref(t)), rel=1e-5, abs=1e-12), t
  # the docstring's example
  for t, want in ((50, 5e-4), (100, 1e-3), (600, 5.5e-4), (1100, 1e-4), (2000, 1e-4)):
    assert float(fn(t)) == pytest.approx(want, rel=1e-5)


def _params():
  rng = np.random.default_rng(0)
  return {'conv': {'kernel': jnp.asarray(rng.normal(size=(3, 3, 2, 4)), jnp.float32),
                   'bias': jnp.asarray(rng.normal(size=(4,)), jnp.float32)},
          'codebook': jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)}


def test_default_recipe_is_plain_adam_so_old_checkpoints_fit():
  params = _params()
  tx = optim.from_config(load_config('fashion_mnist'), total_steps=10)
  ref = optax.adam(2e-4)
  s, r = tx.init(params), ref.init(params)
  assert jax.tree.structure(s) == jax.tree.structure(r)
  g = jax.tree.map(jnp.ones_like, params)
  u, _ = tx.update(g, s, params)
  v, _ = ref.update(g, r, params)
  for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(v)):
    np.testing.assert_array_equal(a, b)
  # older saved configs lack the keys: the same optimiser
  assert optim.structure({'lr': 2e-4}) == optim.structure(load_config('fashion_mnist'))
  assert optim.structure(load_config('fashion_mnist:cpu')) != optim.structure({})


def test_clipping_bounds_the_gradient_adam_sees():
  params = _params()
  tx = optim.make(lr=1e-2, total_steps=10, grad_clip=0.5)
  ref = optax.adam(1e-2)
  rng = np.random.default_rng(1)
  state, rstate = tx.init(params), ref.init(params)
  p, q = params, params
  for scale in (100.0, 0.01, 30.0):  # norms far above, below, above the limit
    g = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape) * scale, jnp.float32),
                     params)
    norm = math.sqrt(sum(float(np.sum(np.square(x))) for x in jax.tree.leaves(g)))
    clipped = jax.tree.map(lambda x: x * min(1.0, 0.5 / norm), g)  # NumPy reference
    u, state = tx.update(g, state, p)
    v, rstate = ref.update(clipped, rstate, q)
    p, q = optax.apply_updates(p, u), optax.apply_updates(q, v)
    for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  # Adam's first moment after the first (clipped) step has norm (1 - b1) * 0.5.
  tx1 = optim.make(lr=1e-2, total_steps=10, grad_clip=0.5)
  g = jax.tree.map(lambda x: 100.0 * jnp.ones_like(x), params)
  _, s1 = tx1.update(g, tx1.init(params), params)
  mu = s1[1][0].mu
  assert math.sqrt(sum(float(jnp.sum(m * m)) for m in jax.tree.leaves(mu))) == \
      pytest.approx(0.1 * 0.5, rel=1e-5)


def test_weight_decay_shrinks_kernels_only():
  params = _params()
  tx = optim.make(lr=1e-2, total_steps=10, weight_decay=0.1)
  zeros = jax.tree.map(jnp.zeros_like, params)
  u, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_allclose(u['conv']['kernel'], -1e-2 * 0.1 * params['conv']['kernel'],
                             rtol=1e-5)
  np.testing.assert_array_equal(u['conv']['bias'], 0.0)
  np.testing.assert_array_equal(u['codebook'], 0.0)


@pytest.mark.parametrize('key,value', [('lr_schedule', 'step'), ('warmup_steps', -1),
                                       ('grad_clip', -1.0), ('weight_decay', -0.1),
                                       ('final_lr_fraction', 1.5)])
def test_bad_settings_are_user_errors(key, value):
  c = load_config('fashion_mnist')
  override(c, key, value)
  with pytest.raises(UserError, match=key):
    optim.check(c)
