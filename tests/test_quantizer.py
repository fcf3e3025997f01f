"""vq / vq_st / losses against float64 NumPy references on random inputs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vqvae_jax.models import quantizer


def _brute_force(x, codebook):
  """float64 [N, K] distances by explicit differences (no expansion)."""
  x = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
  e = np.asarray(codebook, np.float64)
  return np.sum((x[:, None, :] - e[None, :, :]) ** 2, axis=-1)


@pytest.mark.parametrize('shape,k,d', [((7,), 5, 3), ((4, 3, 3), 16, 8), ((2, 5, 6), 64, 32),
                                       ((3, 7, 7), 512, 256)])
def test_vq_matches_float64_brute_force(shape, k, d):
  rng = np.random.default_rng(k * 1000 + d)
  x = rng.normal(size=shape + (d,)).astype(np.float32)
  codebook = rng.normal(size=(k, d)).astype(np.float32)
  got = np.asarray(quantizer.vq(x, codebook))
  assert got.shape == shape and got.dtype == np.int32
  dist = _brute_force(x, codebook)
  want = np.argmin(dist, axis=1)
  got = got.reshape(-1)
  # Where the two nearest codes are closer than float32 can resolve, either is
  # acceptable; tolerance: 1e-4 relative to the distance scale.
  chosen = dist[np.arange(len(got)), got]
  best = dist[np.arange(len(got)), want]
  tol = 1e-4 * np.maximum(1.0, best)
  assert np.all(chosen - best <= tol)
  clear = np.sort(dist, axis=1)[:, 1] - best > tol
  assert clear.mean() > 0.9
  np.testing.assert_array_equal(got[clear], want[clear])


def test_vq_ties_go_to_lowest_index():
  rng = np.random.default_rng(0)
  base = rng.normal(size=(4, 6)).astype(np.float32)
  codebook = np.concatenate([base, base])  # every code appears twice: 0..3 and 4..7
  x = base[[3, 1, 0, 2]] + 0.01 * rng.normal(size=(4, 6)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(quantizer.vq(x, codebook)), [3, 1, 0, 2])
  # Exactly equidistant points: midpoints of two distinct codes.
  mid = (0.5 * (codebook[1] + codebook[2]))[None]
  d = _brute_force(mid, codebook)[0]
  assert abs(d[1] - d[2]) < 1e-5
  assert int(quantizer.vq(mid, codebook)[0]) in (1, 2)


def test_vq_rejects_mismatched_codebook():
  with pytest.raises(ValueError, match='codebook'):
    quantizer.vq(jnp.zeros((2, 4)), jnp.zeros((3, 5)))


def test_vq_st_forward_and_gradients():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
  codebook = rng.normal(size=(6, 4)).astype(np.float32)
  upstream = rng.normal(size=x.shape).astype(np.float32)
  q, idx = quantizer.vq_st(x, codebook)
  want_idx = np.argmin(_brute_force(x, codebook), axis=1).reshape(idx.shape)
  np.testing.assert_array_equal(np.asarray(idx), want_idx)
  np.testing.assert_allclose(np.asarray(q), codebook[want_idx], rtol=0, atol=1e-6)

  def f(x, e):
    return jnp.sum(quantizer.vq_st(x, e)[0] * upstream)

  gx, ge = jax.grad(f, argnums=(0, 1))(x, codebook)
  np.testing.assert_array_equal(np.asarray(gx), upstream)  # straight through, unchanged
  np.testing.assert_array_equal(np.asarray(ge), np.zeros_like(codebook))


def test_vq_losses_gradients_match_hand_derivation():
  rng = np.random.default_rng(2)
  z = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
  codebook = rng.normal(size=(5, 4)).astype(np.float32)
  idx = quantizer.vq(z, codebook)
  n = z.size
  e = codebook[np.asarray(idx)]
  cb, cm = quantizer.vq_losses(z, codebook, idx)
  np.testing.assert_allclose(float(cb), np.mean((z.astype(np.float64) - e) ** 2), rtol=1e-5)
  np.testing.assert_allclose(float(cm), float(cb), rtol=1e-6)
  g_cb_z, g_cb_e = jax.grad(lambda z, e: quantizer.vq_losses(z, e, idx)[0], (0, 1))(z, codebook)
  g_cm_z, g_cm_e = jax.grad(lambda z, e: quantizer.vq_losses(z, e, idx)[1], (0, 1))(z, codebook)
  # codebook term: d/de_k = sum over positions assigned to k of 2 (e_k - z) / n; nothing to z.
  want_e = np.zeros(codebook.shape, np.float64)
  np.add.at(want_e, np.asarray(idx).reshape(-1),
            2.0 * (e - z).reshape(-1, 4).astype(np.float64) / n)
  np.testing.assert_allclose(np.asarray(g_cb_e), want_e, rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(np.asarray(g_cb_z), 0.0)
  # commitment term: d/dz = 2 (z - e) / n; nothing to the codebook.
  np.testing.assert_allclose(np.asarray(g_cm_z), 2.0 * (z - e) / n, rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(np.asarray(g_cm_e), 0.0)


def test_masked_losses_ignore_padding():
  rng = np.random.default_rng(3)
  z = rng.normal(size=(4, 2, 2, 3)).astype(np.float32)
  codebook = rng.normal(size=(5, 3)).astype(np.float32)
  idx = quantizer.vq(z, codebook)
  mask = np.array([1, 1, 0, 0], np.float32)
  cb, _ = quantizer.vq_losses(z, codebook, idx, mask)
  cb2, _ = quantizer.vq_losses(z[:2], codebook, idx[:2])
  np.testing.assert_allclose(float(cb), float(cb2), rtol=1e-6)


def test_code_counts_and_usage_stats():
  rng = np.random.default_rng(4)
  idx = rng.integers(0, 7, size=(5, 3, 3)).astype(np.int32)
  mask = np.array([1, 0, 1, 1, 0])
  counts = np.asarray(quantizer.code_counts(jnp.asarray(idx), 10, jnp.asarray(mask)))
  want = np.bincount(idx[mask.astype(bool)].reshape(-1), minlength=10)
  np.testing.assert_array_equal(counts, want)
  stats = quantizer.usage_stats(counts)
  p = want / want.sum()
  p = p[p > 0]
  np.testing.assert_allclose(stats['perplexity'], np.exp(-np.sum(p * np.log(p))), rtol=1e-5)
  assert stats['usage'] == pytest.approx(np.mean(want > 0))
  assert quantizer.usage_stats(np.array([0, 9, 0, 0]))['perplexity'] == pytest.approx(1.0)
