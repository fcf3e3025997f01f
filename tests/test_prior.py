"""Tests of vqvae_jax.models.prior: shapes, causality (Jacobian), conditioning, loss, bits."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vqvae_jax.models import prior
from vqvae_jax.models.prior import GatedPixelCNN

# Parameters of the PyTorch reference for K=512, 10 classes, 15 layers, dim 64.
REFERENCE_PARAMS = 1_841_472


def _tiny():
  return GatedPixelCNN(num_codes=8, num_classes=3, hidden=8, num_layers=2, head_hidden=16)


@functools.lru_cache(maxsize=None)
def _tiny_params():
  """Parameters do not depend on the grid size: one init for all tests."""
  return _init(_tiny(), 1, 3, 3)


def _init(model, b, h, w, seed=0):
  codes = jnp.zeros((b, h, w), jnp.int32)
  labels = jnp.zeros((b,), jnp.int32)
  return jax.jit(model.init)(jax.random.key(seed), codes, labels)['params']


@functools.lru_cache(maxsize=None)
def _apply(model):
  return jax.jit(lambda p, c, y: model.apply({'params': p}, c, y))


def _count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


def test_default_parameter_count_vs_reference():
  model = GatedPixelCNN()
  shapes = jax.eval_shape(lambda: _init(model, 1, 8, 8))
  # The reference's first layer keeps a 4x7 vertical and a 1x4 horizontal
  # kernel and masks their last row / column to zero; ours are 3x7 and 1x3.
  masked_out = 7 * 64 * 128 + 1 * 64 * 128
  assert _count(shapes) == REFERENCE_PARAMS - masked_out == 1_775_936
  first = shapes['layers_0']
  assert first['v_conv']['kernel'].shape == (3, 7, 64, 128)
  assert first['h_conv']['kernel'].shape == (1, 3, 64, 128)
  assert shapes['layers_1']['v_conv']['kernel'].shape == (2, 3, 64, 128)
  assert shapes['layers_1']['h_conv']['kernel'].shape == (1, 2, 64, 128)
  assert shapes['head']['kernel'].shape == (64, 512)
  assert shapes['out']['kernel'].shape == (512, 512)
  assert model.receptive_radius() == 17


def test_shapes_and_dtype():
  model = _tiny()
  codes = jax.random.randint(jax.random.key(1), (3, 4, 7), 0, 8)
  logits = _apply(model)(_tiny_params(), codes, jnp.array([0, 2, 1]))
  assert logits.shape == (3, 4, 7, 8) and logits.dtype == jnp.float32
  assert np.isfinite(np.asarray(logits)).all()


def test_bad_shapes_raise():
  model = _tiny()
  params = _tiny_params()
  with pytest.raises(ValueError):
    model.apply({'params': params}, jnp.zeros((2, 9), jnp.int32), jnp.zeros((2,), jnp.int32))
  with pytest.raises(ValueError):
    model.apply({'params': params}, jnp.zeros((2, 3, 3), jnp.int32), jnp.zeros((3,), jnp.int32))
  with pytest.raises(ValueError):
    prior.conv_windows(4, first=False)


def _expected_dependence(h, w, radius):
  """dep[i, j, a, b]: True where logits at (i, j) must depend on code (a, b).

  Rows above: i - radius <= a < i and |b - j| <= radius; same row: j - radius <= b < j.
  """
  dep = np.zeros((h, w, h, w), bool)
  for i in range(h):
    for j in range(w):
      for a in range(h):
        for b in range(w):
          above = i - radius <= a < i and abs(b - j) <= radius
          left = a == i and j - radius <= b < j
          dep[i, j, a, b] = above or left
  return dep


@pytest.mark.parametrize('shape', [(7, 7), (5, 12)])
def test_causality_and_no_blind_spot_by_jacobian(shape):
  h, w = shape
  model = _tiny()
  params = _tiny_params()
  # Receptive radius from the layer shapes: the 7x7 first layer reaches 3
  # rows / columns, the 3x3 second layer one more.
  radius = 3 + 1
  assert model.receptive_radius() == radius
  assert radius < max(h, w)  # the field's edge lies inside the grid
  codes = jax.random.randint(jax.random.key(2), (1, h, w), 0, 8)
  labels = jnp.array([1])
  x = model.apply({'params': params}, codes, method=lambda m, c: m.embed(c))

  # A random mix of the K logits per position: zero gradient exactly where
  # every logit's is, non-zero (almost surely) where any one's is.
  mix = jax.random.normal(jax.random.key(5), (8,))

  def mixed_logits(x):
    out = model.apply({'params': params}, x, labels, method=GatedPixelCNN.logits)
    return out[0] @ mix  # [h, w]

  jac = jax.jit(jax.jacrev(mixed_logits))(x)  # [h, w, 1, h, w, C]
  dep = np.asarray(jnp.abs(jac).sum(axis=(2, 5)))  # [h, w, h, w]
  expected = _expected_dependence(h, w, radius)
  assert (dep[~expected] == 0).all(), 'depends on a future or out-of-field code'
  assert (dep[expected] > 0).all(), 'blind spot: misses an earlier code in the field'


def test_causality_by_perturbing_codes():
  model = _tiny()
  h, w = 4, 6
  params = _tiny_params()
  codes = jax.random.randint(jax.random.key(3), (1, h, w), 0, 8)
  # the grid itself, then all h * w single-code changes, in one batch
  raster = np.arange(h * w).reshape(h, w)
  batch = np.repeat(np.asarray(codes), h * w + 1, axis=0)
  batch[1:].reshape(h * w, -1)[np.arange(h * w), raster.ravel()] += 1
  batch %= 8
  labels = jnp.zeros(h * w + 1, jnp.int32)
  out = np.asarray(_apply(model)(params, jnp.asarray(batch), labels))
  # rounding may differ between batch rows; a real dependence moves logits by >> 1e-4
  moved = np.abs(out[1:] - out[:1]).max(axis=-1) > 1e-4  # [p, h, w]
  for p in range(h * w):
    assert not moved[p][raster <= p].any(), p
    assert moved[p][raster > p].any() or p == h * w - 1, p


def test_class_conditioning_changes_logits():
  model = _tiny()
  codes = jnp.tile(jax.random.randint(jax.random.key(4), (1, 4, 7), 0, 8), (3, 1, 1))
  logits = _apply(model)(_tiny_params(), codes, jnp.array([0, 1, 2]))
  for a, b in ((0, 1), (0, 2), (1, 2)):
    # every position changes, the first one (no codes visible) included
    assert (np.abs(logits[a] - logits[b]).max(axis=-1) > 1e-4).all()


def test_loss_falls_with_training():
  model = _tiny()
  # 8 grids of 4x4: class c uses codes c, c+3 in a checkerboard; learnable.
  labels = jnp.asarray(np.arange(8) % 3, jnp.int32)
  board = np.indices((4, 4)).sum(0) % 2
  codes = jnp.asarray(np.asarray(labels)[:, None, None] + 3 * board[None], jnp.int32)
  params = _tiny_params()
  tx = optax.adam(1e-2)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt):
    loss, grads = jax.value_and_grad(lambda p: prior.cross_entropy(
        model.apply({'params': p}, codes, labels), codes))(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  losses = []
  for _ in range(40):
    params, opt, loss = step(params, opt)
    losses.append(float(loss))
  assert losses[-1] < 0.3 * losses[0], losses
  assert all(np.isfinite(losses))


def test_nll_bits_and_bits_per_dim_by_hand():
  # p = (1/2, 1/4, 1/8, 1/8) at every position: codes 0, 1, 2, 3 cost 1, 2, 3, 3 bits.
  probs = np.array([0.5, 0.25, 0.125, 0.125])
  logits = jnp.broadcast_to(jnp.log(jnp.asarray(probs, jnp.float32)) + 5.0, (2, 2, 2, 4))
  codes = jnp.array([[[0, 1], [2, 3]], [[0, 0], [0, 1]]], jnp.int32)
  bits = np.asarray(prior.nll_bits(logits, codes))
  np.testing.assert_allclose(bits, [1 + 2 + 3 + 3, 1 + 1 + 1 + 2], rtol=1e-6)
  # a 2x2 grid for an 8x8x1 image: 9 bits / 64 dims
  np.testing.assert_allclose(prior.bits_per_dim(bits[0], (8, 8, 1)), 9 / 64, rtol=1e-6)
  np.testing.assert_allclose(prior.bits_per_dim(bits, (4, 4, 3)), bits / 48, rtol=1e-6)
  # mean nats per code
  np.testing.assert_allclose(prior.cross_entropy(logits, codes),
                             (9 + 5) / 8 * math.log(2), rtol=1e-6)


def test_uniform_prior_bits_per_dim():
  # Uniform logits over K = 512: log2(512) = 9 bits per code; 7x7 codes of a
  # 28x28x1 image -> 441 / 784 bits per dim.
  logits = jnp.zeros((1, 7, 7, 512))
  bits = prior.nll_bits(logits, jnp.zeros((1, 7, 7), jnp.int32))
  np.testing.assert_allclose(bits, [441.0], rtol=1e-6)
  np.testing.assert_allclose(prior.bits_per_dim(bits, (28, 28, 1)), [0.5625], rtol=1e-6)
