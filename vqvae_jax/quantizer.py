"""Vector quantisation with a straight-through estimator.

Van den Oord, Vinyals, Kavukcuoglu, "Neural Discrete Representation Learning"
(NeurIPS 2017), section 3.1 and eq. 3. Shapes, e.g. for a 28x28 image batch with
D = 256 and K = 512: z_e [B, 7, 7, 256] float32, codebook [512, 256] ->
indices [B, 7, 7] int32, quantized [B, 7, 7, 256] float32.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


@jax.jit
def vq(inputs, codebook):
  """Nearest codebook entry in squared L2 distance.

  Computed in float32 with the expanded form |x|^2 - 2 x.e + |e|^2 as one
  matrix product, so [N, K, D] is never materialised. Exact ties go to the
  lowest index (argmin returns the first minimum).

  Args:
    inputs: [..., D] float.
    codebook: [K, D] float.
  Returns:
    indices: inputs.shape[:-1] int32.
  """
  d = inputs.shape[-1]
  if codebook.ndim != 2 or codebook.shape[1] != d:
    raise ValueError(f'codebook must be [K, {d}], got {codebook.shape}')
  flat = inputs.reshape(-1, d).astype(jnp.float32)
  codebook = codebook.astype(jnp.float32)
  dots = jnp.matmul(flat, codebook.T, precision=lax.Precision.HIGHEST)
  dist = (jnp.sum(flat * flat, axis=1, keepdims=True) - 2.0 * dots
          + jnp.sum(codebook * codebook, axis=1)[None, :])
  indices = jnp.argmin(dist, axis=1).astype(jnp.int32)
  return indices.reshape(inputs.shape[:-1])


@jax.jit
def vq_st(inputs, codebook):
  """Quantises with the straight-through estimator.

  Forward: the nearest codes. Backward: the upstream gradient passes to
  `inputs` unchanged, and nothing reaches `codebook` through this path (the
  codebook learns from `codebook_loss` only).

  Args:
    inputs: [..., D] float (z_e).
    codebook: [K, D] float.
  Returns:
    quantized: [..., D], same dtype as inputs (z_q in the forward pass).
    indices: inputs.shape[:-1] int32.
  """
  indices = vq(inputs, lax.stop_gradient(codebook))
  codes = jnp.take(lax.stop_gradient(codebook), indices, axis=0).astype(inputs.dtype)
  quantized = inputs + lax.stop_gradient(codes - inputs)
  return quantized, indices


def vq_losses(z_e, codebook, indices, mask=None):
  """The codebook and commitment terms of eq. 3, mean over elements.

  codebook_loss = ||sg[z_e] - e||^2 (moves the codes; no gradient to z_e);
  commitment_loss = ||z_e - sg[e]||^2 (moves the encoder; the caller scales it
  by beta).

  Args:
    z_e: [B, h, w, D] encoder output.
    codebook: [K, D].
    indices: [B, h, w] int32, the codes chosen for z_e.
    mask: optional [B] weights (padding in evaluation); the means then run
      over the weighted examples only.
  Returns:
    (codebook_loss, commitment_loss): float32 scalars.
  """
  z_e = z_e.astype(jnp.float32)
  e = jnp.take(codebook, indices, axis=0).astype(jnp.float32)
  cb = jnp.square(lax.stop_gradient(z_e) - e)
  cm = jnp.square(z_e - lax.stop_gradient(e))
  return masked_mean(cb, mask), masked_mean(cm, mask)


def masked_mean(x, mask=None):
  """Mean of x [B, ...]; with mask [B], over the examples where mask != 0."""
  if mask is None:
    return jnp.mean(x)
  w = mask.astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
  per_example = x[0].size
  return jnp.sum(x * w) / jnp.maximum(jnp.sum(w) * per_example, 1.0)


def code_counts(indices, num_codes, mask=None):
  """How often each code was chosen: indices [B, ...] -> [K] int32."""
  flat = indices.reshape(indices.shape[0], -1)
  if mask is None:
    weights = jnp.ones(flat.shape, jnp.int32)
  else:
    weights = jnp.broadcast_to(mask.astype(jnp.int32)[:, None], flat.shape)
  return jnp.zeros((num_codes,), jnp.int32).at[flat.reshape(-1)].add(weights.reshape(-1))


def usage_stats(counts):
  """Codebook perplexity exp(H(p)) and the fraction of codes used.

  Args:
    counts: [K] code counts (numpy or jax).
  Returns:
    dict(perplexity=float, usage=float), perplexity in [1, K].
  """
  counts = jnp.asarray(counts, jnp.float32)
  total = jnp.maximum(jnp.sum(counts), 1.0)
  p = counts / total
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
  return {'perplexity': float(jnp.exp(entropy)), 'usage': float(jnp.mean(counts > 0))}
