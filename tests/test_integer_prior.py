"""The integer prior: exact against a NumPy int64 reference, incremental ==
whole grid, causal, close to the float prior, and a lossless batched coder."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vqvae_jax.codec import entropy, integer_prior as ip
from vqvae_jax.models.prior import GatedPixelCNN

K, CLASSES, HIDDEN, LAYERS = 32, 3, 16, 4
SHAPE = (5, 6)


@functools.lru_cache(maxsize=1)
def _model():
  """A small prior with random float weights and its integer conversion."""
  model = GatedPixelCNN(num_codes=K, num_classes=CLASSES, hidden=HIDDEN, num_layers=LAYERS,
                        head_hidden=48)
  rng = np.random.default_rng(0)
  codes = rng.integers(0, K, (40,) + SHAPE).astype(np.int32)
  labels = rng.integers(0, CLASSES, 40).astype(np.int32)
  params = model.init(jax.random.key(0), codes[:1], labels[:1])['params']
  iprior = ip.quantize(model, params, codes, labels)
  return model, params, iprior, ip.device_arrays(iprior), codes, labels


LAYER0 = ('tables', 'conv')  # the two formulations of layer 0 (`device_arrays`)


@functools.lru_cache(maxsize=2)
def _arrays(layer0):
  return ip.device_arrays(_model()[2], layer0)


# --- an independent NumPy int64 reference ------------------------------------

def _shift(x, s):
  """x * 2^-s rounded half up (s per last-axis channel, any sign), int64."""
  s = np.broadcast_to(np.asarray(s, np.int64), x.shape)
  up = x * (2 ** np.maximum(-s, 0))
  r = np.maximum(s, 0)
  return np.where(s > 0, (x + (2 ** np.maximum(r - 1, 0))) // (2 ** r), up)


def _window_sum(x, w, rows, cols, i, j):
  """sum over (dy, dx, c) of x[:, i + dy, j + dx, c] * w[(dy, dx, c)] for dy, dx
  offsets in `rows` x `cols`, zero outside the grid. x [B, H, W, C] int64."""
  b, hh, ww, c = x.shape
  patch = np.zeros((b, len(rows) * len(cols) * c), np.int64)
  for n, (dy, dx) in enumerate((dy, dx) for dy in rows for dx in cols):
    y, z = i + dy, j + dx
    if 0 <= y < hh and 0 <= z < ww:
      patch[:, n * c:(n + 1) * c] = x[:, y, z]
  return patch @ w


def _gate(t, tanh, sig):
  n = ip.GATE_RANGE << ip.F_GATE
  a, b = np.split(np.clip(t, -n, n) + n, 2, axis=-1)
  return np.clip(_shift(tanh[a] * sig[b], 2 * ip.F_TABLE - ip.F_GATE_OUT), -127, 127)


def reference_logits(iprior, codes, labels):
  """The integer network written out position by position from the windows
  in `vqvae_jax.models.prior`'s docstring: codes [B, h, w] -> logits [B, h, w, K]."""
  a = {k: np.asarray(v, np.int64) for k, v in iprior.arrays.items()}
  tanh, sig = (t.astype(np.int64) for t in ip.gate_tables())
  b, hh, ww = codes.shape
  v = hvals = a['embed'][codes]
  res = None
  for l in range(iprior.num_layers):
    r = iprior.first_kernel // 2 if l == 0 else iprior.kernel // 2
    v_rows = range(-r, 0) if l == 0 else range(-r, 1)
    h_cols = range(-r, 0) if l == 0 else range(-r, 1)
    c = a[f'l{l}/cls'][labels]
    new_v = np.zeros(v.shape, np.int64)
    new_h = np.zeros(hvals.shape, np.int64)
    new_res = np.zeros(hvals.shape, np.int64)
    for i in range(hh):
      for j in range(ww):
        vp = _shift(_window_sum(v, a[f'l{l}/v_w'], v_rows, range(-r, r + 1), i, j),
                    a[f'l{l}/v_s']) + a[f'l{l}/v_b']
        new_v[:, i, j] = _gate(vp + c, tanh, sig)
        vp8 = np.clip(_shift(vp, ip.F_GATE - a['f'][l, 0]), -127, 127)
        t = (_shift(vp8 @ a[f'l{l}/vh_w'], a[f'l{l}/vh_s']) + a[f'l{l}/vh_b'] +
             _shift(_window_sum(hvals, a[f'l{l}/h_w'], [0], h_cols, i, j), a[f'l{l}/h_s']) +
             a[f'l{l}/h_b'] + c)
        out = _shift(_gate(t, tanh, sig) @ a[f'l{l}/p_w'], a[f'l{l}/p_s']) + a[f'l{l}/p_b']
        new_res[:, i, j] = out if res is None else out + res[:, i, j]
        new_h[:, i, j] = np.clip(_shift(new_res[:, i, j], ip.F_RES - a['f'][l, 1]), -127, 127)
    v, hvals, res = new_v, new_h, new_res
  hid = np.clip(np.maximum(_shift(hvals @ a['head_w'], a['head_s']) + a['head_b'], 0), 0, 127)
  return _shift(hid @ a['out_w'], a['out_s']) + a['out_b']


@pytest.mark.parametrize('layer0', LAYER0)
def test_whole_grid_equals_the_int64_reference_exactly(layer0):
  _, _, iprior, _, codes, labels = _model()
  arrays = _arrays(layer0)
  got = np.asarray(ip.logits(iprior, arrays, codes[:6], labels[:6]))
  assert got.dtype == np.int32 and got.shape == (6,) + SHAPE + (K,)
  np.testing.assert_array_equal(got, reference_logits(iprior, codes[:6], labels[:6]))


def _incremental(iprior, arrays, codes, labels):
  b = codes.shape[0]
  out = np.zeros(codes.shape + (iprior.num_codes,), np.int32)
  v_cache, h_row, from_vs = ip.init_caches(iprior, b, codes.shape[1:])
  for i in range(codes.shape[1]):
    from_vs, v_cache = ip.row_step(iprior, arrays, codes, v_cache, from_vs, jnp.int32(i), labels)
    for j in range(codes.shape[2]):
      logits, h_row = ip.position_step(iprior, arrays, codes, from_vs, h_row, jnp.int32(i),
                                       jnp.int32(j), labels)
      out[:, i, j] = np.asarray(logits)
  return out


@pytest.mark.parametrize('layer0', LAYER0)
def test_incremental_steps_equal_the_whole_grid_for_any_batch(layer0):
  _, _, iprior, _, codes, labels = _model()
  arrays = _arrays(layer0)
  whole = np.asarray(ip.logits(iprior, arrays, codes[:8], labels[:8]))
  np.testing.assert_array_equal(_incremental(iprior, arrays, codes[:8], labels[:8]), whole)
  order = np.array([5, 2, 7])  # another batch: a subset, reordered
  np.testing.assert_array_equal(
      _incremental(iprior, arrays, codes[order], labels[order]), whole[order])


def test_logits_never_see_the_current_or_later_codes():
  _, _, iprior, arrays, codes, labels = _model()
  base = np.asarray(ip.logits(iprior, arrays, codes[:4], labels[:4]))
  rng = np.random.default_rng(1)
  for p in (0, 7, SHAPE[0] * SHAPE[1] - 1):
    i, j = divmod(p, SHAPE[1])
    changed = codes[:4].copy().reshape(4, -1)
    changed[:, p:] = rng.integers(0, K, changed[:, p:].shape)
    got = np.asarray(ip.logits(iprior, arrays, changed.reshape(codes[:4].shape), labels[:4]))
    np.testing.assert_array_equal(got[:, i, j], base[:, i, j])
    if p > 0:  # ... but do see the earlier ones
      earlier = codes[:4].copy().reshape(4, -1)
      earlier[:, p - 1] = (earlier[:, p - 1] + 1) % K
      got = np.asarray(ip.logits(iprior, arrays, earlier.reshape(codes[:4].shape), labels[:4]))
      assert np.any(got[:, i, j] != base[:, i, j])


def test_integer_logits_follow_the_float_prior():
  model, params, iprior, arrays, codes, labels = _model()
  flt = np.asarray(model.apply({'params': params}, codes[:8], labels[:8]), np.float64)
  got = np.asarray(ip.logits(iprior, arrays, codes[:8], labels[:8])) / 2.0 ** ip.F_LOGIT
  # Centred logits (what the softmax sees) within 10% of their spread.
  err = (got - got.mean(-1, keepdims=True)) - (flt - flt.mean(-1, keepdims=True))
  assert np.abs(err).max() < 0.1 * (flt.max() - flt.min())
  assert np.corrcoef(got.ravel(), flt.ravel())[0, 1] > 0.99


def test_gate_tables_match_float64_tanh_and_sigmoid():
  tanh, sig = ip.gate_tables()
  t = np.arange(-(ip.GATE_RANGE << ip.F_GATE), (ip.GATE_RANGE << ip.F_GATE) + 1) / 2.0 ** ip.F_GATE
  np.testing.assert_allclose(tanh, np.tanh(t) * 2 ** ip.F_TABLE, atol=0.5 + 1e-9)
  np.testing.assert_allclose(sig, 2 ** ip.F_TABLE / (1 + np.exp(-t)), atol=0.5 + 1e-9)


def test_save_load_keeps_the_fingerprint_and_any_change_alters_it(tmp_path):
  _, _, iprior, _, _, _ = _model()
  ip.save(iprior, str(tmp_path / 'p.npz'))
  back = ip.load(str(tmp_path / 'p.npz'))
  assert back.fingerprint == iprior.fingerprint and back == iprior
  arrays = dict(iprior.arrays)
  arrays['l1/p_b'] = arrays['l1/p_b'].copy()
  arrays['l1/p_b'][0] += 1
  other = ip.IntegerPrior(iprior.num_codes, iprior.num_classes, iprior.hidden,
                          iprior.num_layers, iprior.first_kernel, iprior.kernel, arrays=arrays)
  assert other.fingerprint != iprior.fingerprint


def test_batched_coder_round_trip_and_label_choice():
  _, _, iprior, arrays, codes, labels = _model()
  coded = entropy.encode_batch(iprior, arrays, codes[:10])
  payloads, used = [c[0] for c in coded], [c[1] for c in coded]
  # The chosen label has the fewest bits under the integer tables, up to the
  # float proxy used to choose (a small fraction of a bit per grid).
  _, every = entropy.integer_logits(
      iprior, arrays, np.repeat(codes[:10], CLASSES, axis=0), np.tile(np.arange(CLASSES), 10))
  freqs = entropy.frequencies_from_logits(np.asarray(every))
  freqs = freqs.reshape(10, CLASSES, -1, K)
  bits = np.array([entropy.table_bits(freqs[n], codes[n]) for n in range(10)])
  assert np.all(bits[np.arange(10), used] <= bits.min(axis=1) + 0.5)
  # Payload length follows the ideal length (range coder overhead < 32 bits).
  for n, p in enumerate(payloads):
    assert 8 * len(p) <= bits[n, used[n]] + 32
  got, errors = entropy.decode_batch(iprior, arrays, payloads, SHAPE, used)
  assert errors == [None] * 10
  np.testing.assert_array_equal(got, codes[:10])
  # Fixed labels, decoded in another batch composition.
  coded = entropy.encode_batch(iprior, arrays, codes[:4], labels[:4])
  assert [c[1] for c in coded] == labels[:4].tolist()
  got, _ = entropy.decode_batch(iprior, arrays, [c[0] for c in coded][::-1], SHAPE,
                                     labels[:4][::-1])
  np.testing.assert_array_equal(got, codes[:4][::-1])


def test_decode_batch_refuses_labels_out_of_range():
  _, _, iprior, arrays, _, _ = _model()
  with pytest.raises(entropy.FormatError, match='labels'):
    entropy.decode_batch(iprior, arrays, [b'\x01\x02'], SHAPE, [CLASSES])


def test_label_table_is_the_smoothed_log_frequency_of_codes_per_label():
  rng = np.random.default_rng(3)
  codes = rng.integers(0, K, (30,) + SHAPE)
  labels = rng.integers(0, CLASSES, 30)
  table = ip.label_table(codes, labels, CLASSES, K)
  for y in range(CLASSES):  # brute force: count every code of every grid of label y
    counts = np.full(K, 0.5)
    for grid in codes[labels == y]:
      for z in grid.ravel():
        counts[z] += 1
    np.testing.assert_allclose(table[y], np.log(counts / counts.sum()), rtol=1e-6)


def test_label_table_leaves_the_fingerprint_and_decoding_alone_and_shortlists_labels():
  _, _, iprior, arrays, codes, labels = _model()
  tabled = ip.with_label_table(iprior, codes, labels)
  assert tabled.fingerprint == iprior.fingerprint
  cands = entropy.label_candidates(tabled, codes[:10], shortlist=2)
  assert cands.shape == (10, 2)
  table = tabled.arrays[ip.LABEL_TABLE].astype(np.float64)
  for n in range(10):  # the two labels of the highest bag-of-codes score
    scores = [sum(table[y, z] for z in codes[n].ravel()) for y in range(CLASSES)]
    assert sorted(cands[n].tolist()) == sorted(np.argsort(scores)[::-1][:2].tolist())
  coded = entropy.encode_batch(tabled, arrays, codes[:10], shortlist=2)
  used = [c[1] for c in coded]
  assert all(u in cands[n] for n, u in enumerate(used))
  # The chosen one is the better of the two (up to the float proxy).
  _, every = entropy.integer_logits(tabled, arrays, np.repeat(codes[:10], CLASSES, axis=0),
                                    np.tile(np.arange(CLASSES), 10))
  freqs = entropy.frequencies_from_logits(np.asarray(every)).reshape(10, CLASSES, -1, K)
  for n in range(10):
    bits = [entropy.table_bits(freqs[n, y], codes[n]) for y in cands[n]]
    assert entropy.table_bits(freqs[n, used[n]], codes[n]) <= min(bits) + 0.5
  got, errors = entropy.decode_batch(iprior, arrays, [c[0] for c in coded], SHAPE, used)
  assert errors == [None] * 10
  np.testing.assert_array_equal(got, codes[:10])
  # Without a table, or with a shortlist of every label: all labels, in order.
  np.testing.assert_array_equal(entropy.label_candidates(iprior, codes[:2]),
                                np.tile(np.arange(CLASSES), (2, 1)))
  np.testing.assert_array_equal(entropy.label_candidates(tabled, codes[:2], CLASSES),
                                np.tile(np.arange(CLASSES), (2, 1)))
