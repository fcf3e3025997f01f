"""Vector quantisation with a straight-through estimator.

Van den Oord, Vinyals, Kavukcuoglu, "Neural Discrete Representation Learning"
(NeurIPS 2017), section 3.1 and eq. 3. Shapes, e.g. for a 28x28 image batch with
D = 256 and K = 512: z_e [B, 7, 7, 256] float32, codebook [512, 256] ->
indices [B, 7, 7] int32, quantized [B, 7, 7, 256] float32.

Codebook health (all optional, pure functions used by `train.vqvae.train_step`):
`ema_update` (appendix A.1: exponential moving averages of code counts and
sums with Laplace smoothing, reduced over the pmap axis), `restart_dead_codes`
(codes unused for a number of steps take encoder outputs of the current batch)
and `kmeans` (seeding the codebook from the first batches); `usage_stats`
gives perplexity and the fraction of codes used.
"""
from __future__ import annotations

import functools

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


def quantization_error(z_e, codebook, indices):
  """The value of either term of eq. 3 per example (no gradients are meant).

  z_e [B, h, w, D], codebook [K, D], indices [B, h, w] -> [B] float32 mean over
  h, w, D of (z_e - e)^2, e the chosen codes.
  """
  e = jnp.take(codebook, indices, axis=0).astype(jnp.float32)
  return jnp.mean(jnp.square(z_e.astype(jnp.float32) - e), axis=(1, 2, 3))


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


# Codebook health: EMA updates, dead-code restart, data-driven initialisation.

def check_ema_args(decay, epsilon) -> None:
  """Raises ValueError unless 0 < decay < 1 and epsilon > 0 (Python numbers)."""
  if not 0.0 < float(decay) < 1.0:
    raise ValueError(f'EMA decay must be in (0, 1), got {decay}')
  if not float(epsilon) > 0.0:
    raise ValueError(f'EMA epsilon (Laplace smoothing) must be > 0, got {epsilon}')


def ema_init(codebook):
  """EMA statistics that reproduce `codebook`: counts [K] = 1, sums [K, D] = codebook.

  With every count at 1 the Laplace-smoothed counts are exactly 1 too, so the
  first update starts from the given codebook (as if each code had been chosen
  once); a code that is never chosen keeps its direction while both decay.
  """
  codebook = jnp.asarray(codebook, jnp.float32)
  return jnp.ones(codebook.shape[:1], jnp.float32), codebook


def ema_update(ema_counts, ema_sums, flat_z, flat_idx, *, decay, epsilon, axis_name=None):
  """One exponential-moving-average codebook update (paper, appendix A.1).

    n_i = #{j: idx_j = i},           N_i <- decay N_i + (1 - decay) n_i
    s_i = sum_{idx_j = i} z_j,       m_i <- decay m_i + (1 - decay) s_i
    e_i = m_i / N~_i,  N~_i = (N_i + eps) / (n + K eps) * n,  n = sum_i N_i

  (N~ is N with Laplace smoothing, so a rarely used code never divides by ~0.)
  Under pmap, n_i and s_i are summed over `axis_name` first, so every replica
  computes the identical statistics and codebook.

  Args:
    ema_counts: [K] float32, N.
    ema_sums: [K, D] float32, m.
    flat_z: [N, D] encoder outputs z_e (this device's shard).
    flat_idx: [N] int32, their nearest codes.
    decay, epsilon: Python floats (`check_ema_args`).
    axis_name: the pmap axis to reduce over, or None.
  Returns:
    (codebook [K, D], ema_counts [K], ema_sums [K, D]), float32.
  """
  check_ema_args(decay, epsilon)
  k = ema_counts.shape[0]
  flat_z = flat_z.astype(jnp.float32)
  n_i = jax.ops.segment_sum(jnp.ones(flat_idx.shape, jnp.float32), flat_idx, num_segments=k)
  s_i = jax.ops.segment_sum(flat_z, flat_idx, num_segments=k)
  if axis_name is not None:
    n_i, s_i = lax.psum((n_i, s_i), axis_name)
  counts = decay * ema_counts + (1.0 - decay) * n_i
  sums = decay * ema_sums + (1.0 - decay) * s_i
  total = jnp.sum(counts)
  smoothed = (counts + epsilon) / (total + k * epsilon) * total
  return sums / smoothed[:, None], counts, sums


def restart_dead_codes(codebook, unused, counts, candidates, key, *, restart_after):
  """Re-initialises codes not chosen for `restart_after` steps from encoder outputs.

  Args:
    codebook: [K, D].
    unused: [K] int32, steps since each code was last chosen (before this step).
    counts: [K] this step's code counts (over all devices).
    candidates: [N, D] encoder outputs of the current (global) batch.
    key: PRNG key; the same key and candidates give the same codebook on every
      device. Dead code number r (in index order) takes candidate perm[r mod N]
      of a random permutation, so dead codes get distinct vectors when N >= #dead.
    restart_after: Python int > 0.
  Returns:
    (codebook [K, D], unused [K] int32 (0 for the restarted codes), dead [K] bool).
  """
  if restart_after <= 0:
    raise ValueError(f'restart_after must be positive, got {restart_after}')
  unused = jnp.where(counts > 0, 0, unused + 1)
  dead = unused >= restart_after
  n = candidates.shape[0]
  rank = jnp.cumsum(dead.astype(jnp.int32)) - 1
  pick = jax.random.permutation(key, n)[jnp.mod(rank, n)]
  new = jnp.take(candidates, pick, axis=0).astype(codebook.dtype)
  codebook = jnp.where(dead[:, None], new, codebook)
  return codebook, jnp.where(dead, 0, unused).astype(jnp.int32), dead


@functools.partial(jax.jit, static_argnames=('k', 'iters'))
def kmeans(vectors, key, *, k, iters):
  """Lloyd's k-means, seeded with k random distinct vectors (`iters`=0: just those).

  Args:
    vectors: [N, D] float (e.g. encoder outputs of the first batches).
    key: PRNG key for the seeding.
    k: number of centroids; if N < k the seeds repeat (duplicates stay
      unused until restarted).
    iters: Lloyd iterations; an empty cluster keeps its centroid.
  Returns:
    [k, D] float32 centroids.
  """
  vectors = vectors.astype(jnp.float32)
  n = vectors.shape[0]
  seeds = jax.random.permutation(key, n)[jnp.arange(k) % n]
  centroids = jnp.take(vectors, seeds, axis=0)

  def step(c, _):
    idx = vq(vectors, c)
    sums = jax.ops.segment_sum(vectors, idx, num_segments=k)
    cnt = jax.ops.segment_sum(jnp.ones((n,), jnp.float32), idx, num_segments=k)
    return jnp.where(cnt[:, None] > 0, sums / jnp.maximum(cnt, 1.0)[:, None], c), None

  centroids, _ = lax.scan(step, centroids, None, length=iters)
  return centroids
