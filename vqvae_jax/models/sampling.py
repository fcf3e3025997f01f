"""Ancestral sampling of code grids from the Gated PixelCNN prior.

Both samplers visit the positions of an h x w grid in raster order p = i * w + j
and draw z[:, i, j] ~ softmax(logits[:, i, j] / temperature) with the key
`jax.random.fold_in(key, p)`; positions not yet drawn hold 0.

`sample_codes_plain` runs the whole network over the whole grid once per
position (as the original and the PyTorch reference do): h * w full passes.

`sample_codes` computes only what a new code can change, with caches:
  * once per row i, the vertical stack of every layer for row i alone (each
    layer's vertical window reads rows i-r..i of the layer below, kept in a
    per-layer cache of past rows);
  * once per position (i, j), the horizontal stack of every layer at (i, j)
    alone (each layer's horizontal window reads columns j-r..j of the layer
    below in the current row, kept in a per-layer row cache), then the head.
Each step calls the same layer methods on the same weights with the windows
the full pass would read, so the logits equal the full pass's up to float
rounding (summation order; about 1e-6 relative), and, with the same per-position
key and categorical draw, so do the samples: `tests/test_sampling.py` checks
exact equality of the codes. A draw could only differ if two Gumbel-perturbed
logits were within that rounding of each other.

The VQ-VAE's `decode` turns the sampled codes into images.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

import numpy as np

from vqvae_jax.models.prior import GatedPixelCNN, conv_windows
from vqvae_jax.models.vqvae import VQVAE, to_uint8


def _check(model, labels, shape, temperature):
  if not isinstance(model, GatedPixelCNN):
    raise TypeError(f'expected a GatedPixelCNN, got {type(model).__name__}')
  labels = jnp.asarray(labels, jnp.int32)
  if labels.ndim != 1:
    raise ValueError(f'labels must be [B], got shape {labels.shape}')
  h, w = shape
  if h < 1 or w < 1:
    raise ValueError(f'grid shape must be positive, got {shape}')
  if not temperature > 0:
    raise ValueError(f'temperature must be > 0, got {temperature}')
  return labels, (int(h), int(w))


def _draw(key, logits, temperature):
  """logits: [B, K] -> codes [B] int32 ~ softmax(logits / temperature)."""
  return jax.random.categorical(key, logits / temperature, axis=-1).astype(jnp.int32)


def sample_codes_plain(model, params, labels, shape, key, temperature=1.0):
  """Reference sampler: one full network pass per position.

  model: GatedPixelCNN, params: its 'params' collection, labels: [B] int,
  shape: (h, w), key: PRNG key -> codes [B, h, w] int32.
  """
  labels, shape = _check(model, labels, shape, temperature)
  return _plain(model, params, labels, key, jnp.float32(temperature), shape)


@functools.partial(jax.jit, static_argnames=('model', 'shape'))
def _plain(model, params, labels, key, temperature, shape):
  h, w = shape

  def body(p, codes):
    i, j = p // w, p % w
    logits = model.apply({'params': params}, codes, labels)[:, i, j]
    return codes.at[:, i, j].set(_draw(jax.random.fold_in(key, p), logits, temperature))

  return lax.fori_loop(0, h * w, body, jnp.zeros((labels.shape[0], h, w), jnp.int32))


def sample_codes(model, params, labels, shape, key, temperature=1.0):
  """Fast sampler with cached activations; same samples as `sample_codes_plain`.

  model: GatedPixelCNN, params: its 'params' collection, labels: [B] int,
  shape: (h, w), key: PRNG key, temperature: > 0 (1 samples the model; lower
  is greedier) -> codes [B, h, w] int32 in [0, K).
  """
  labels, shape = _check(model, labels, shape, temperature)
  return _fast(model, params, labels, key, jnp.float32(temperature), shape)


@functools.partial(jax.jit, static_argnames=('model', 'shape'))
def _fast(model, params, labels, key, temperature, shape):
  def pick(p, logits, codes):
    del codes
    return _draw(jax.random.fold_in(key, p), logits, temperature)

  codes, _ = raster_scan(model, params, labels, shape, pick, record=False)
  return codes


@functools.partial(jax.jit, static_argnames=('model',))
def incremental_logits(model, params, codes, labels):
  """The fast sampler's logits with the codes given (teacher forcing).

  codes: [B, h, w] int, labels: [B] int -> [B, h, w, K]: equal to
  `model.apply({'params': params}, codes, labels)` up to float rounding.
  """
  flat = codes.reshape(codes.shape[0], -1)

  def pick(p, logits, current):
    del logits, current
    return flat[:, p].astype(jnp.int32)

  _, logits = raster_scan(model, params, labels, codes.shape[1:], pick, record=True)
  return logits


def sample_images(prior, prior_params, vq_model, vq_variables, num_classes, per_class, grid,
                  key, temperature=1.0):
  """`per_class` decoded samples of each class, class by class.

  Returns (images [num_classes * per_class, H, W, C] uint8, labels [same] int32
  = [0] * per_class + [1] * per_class + ...); codes [.., h, w] come from
  `sample_codes` with `key`, so the same key gives the same images.
  """
  labels = jnp.repeat(jnp.arange(num_classes, dtype=jnp.int32), per_class)
  codes = sample_codes(prior, prior_params, labels, tuple(grid), key, temperature)
  images = jax.jit(lambda v, c: vq_model.apply(v, c, method=VQVAE.decode))(vq_variables, codes)
  return to_uint8(images), np.asarray(labels)


def _windows(model):
  """Per layer: `conv_windows` (vertical and horizontal padding amounts)."""
  out = []
  for l in range(model.num_layers):
    kernel = model.first_kernel if l == 0 else model.kernel
    out.append(conv_windows(kernel, first=(l == 0)))
  return out


def raster_scan(model, params, labels, shape, pick, record):
  """Raster loop over the grid, rows outside, columns inside: the fast sampler's
  cached scan, also run by the entropy coder (`vqvae_jax.codec.entropy`).

  pick(p, logits [B, K], codes [B, h, w]) -> codes [B] at position p. Returns
  (codes [B, h, w] int32, logits [B, h, w, K] if record else None).
  """
  h, w = shape
  b, c, n = labels.shape[0], model.hidden, model.num_layers
  win = _windows(model)
  variables = {'params': params}
  # v_cache[l]: rows of layer l's v, with layer l+1's `top` zero rows above;
  # h_row[l]: current row of layer l's h, with layer l+1's `left` zeros before.
  v_cache = [jnp.zeros((b, win[l + 1][0][0][0] + h, w, c)) for l in range(n - 1)]
  h_row = [jnp.zeros((b, win[l + 1][1][0] + w, c)) for l in range(n - 1)]
  logits_all = jnp.zeros((b, h, w, model.num_codes)) if record else None

  def row_body(i, carry):
    codes, v_cache, logits_all = carry
    v_pres, v_cache = model.apply(variables, codes, v_cache, i, labels, win,
                                  method=_row_step)

    def col_body(j, carry):
      codes, h_row, logits_all = carry
      logits, h_row = model.apply(variables, codes, v_pres, h_row, i, j, labels, win,
                                  method=_position_step)
      codes = codes.at[:, i, j].set(pick(i * w + j, logits, codes))
      if record:
        logits_all = logits_all.at[:, i, j].set(logits)
      return codes, h_row, logits_all

    codes, _, logits_all = lax.fori_loop(0, w, col_body, (codes, h_row, logits_all))
    return codes, v_cache, logits_all

  codes = jnp.zeros((b, h, w), jnp.int32)
  codes, _, logits_all = lax.fori_loop(0, h, row_body, (codes, v_cache, logits_all))
  return codes, logits_all


def _row_step(m, codes, v_cache, i, labels, win):
  """Vertical stacks of row i, all layers (m: the bound GatedPixelCNN).

  Returns (v_pre [B, 1, w, 2C] per layer, v_cache with row i of every layer's v).
  """
  (top, bottom), (left, right) = win[0][0]
  x = jnp.pad(m.embed(codes), ((0, 0), (top, 0), (left, right), (0, 0)))
  window = lax.dynamic_slice_in_dim(x, i, top + bottom + 1, axis=1)
  v_pres, new_cache = [], []
  for l, layer in enumerate(m.layers):
    if l > 0:
      (top, bottom), (left, right) = win[l][0]
      rows = lax.dynamic_slice_in_dim(new_cache[l - 1], i, top + bottom + 1, axis=1)
      window = jnp.pad(rows, ((0, 0), (0, 0), (left, right), (0, 0)))
    v_pre = layer.vertical(window)
    v_pres.append(v_pre)
    if l + 1 < len(m.layers):
      v = layer.vertical_out(v_pre, layer.bias(labels))
      new_cache.append(lax.dynamic_update_slice_in_dim(
          v_cache[l], v, i + win[l + 1][0][0][0], axis=1))
  return v_pres, new_cache


def _position_step(m, codes, v_pres, h_row, i, j, labels, win):
  """Horizontal stacks and head at (i, j), all layers.

  Returns (logits [B, K], h_row with column j of every layer's h).
  """
  src = jnp.pad(m.embed(codes[:, i]), ((0, 0), (win[0][1][0], 0), (0, 0)))
  h, new_row = None, []
  for l, layer in enumerate(m.layers):
    left, right = win[l][1]
    if l > 0:
      src = new_row[l - 1]
    window = lax.dynamic_slice_in_dim(src, j, left + right + 1, axis=1)[:, None]
    v_pre = lax.dynamic_slice_in_dim(v_pres[l], j, 1, axis=2)
    h = layer.horizontal(v_pre, window, h, layer.bias(labels))
    if l + 1 < len(m.layers):
      new_row.append(lax.dynamic_update_slice_in_dim(
          h_row[l], h[:, 0], j + win[l + 1][1][0], axis=1))
  return m.output(h[:, 0, 0]), new_row
