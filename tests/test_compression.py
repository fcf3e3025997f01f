"""Tests of the codec: file format, fixed-length and prior entropy coding, CLI.

Tiny seeded models (no training): a VQ-VAE with hidden 8 and K = 16, a Gated
PixelCNN with 2 layers of width 8 and 3 classes; images of a few pixels.
"""
import dataclasses
import functools
import hashlib
import os
import resource
import time
import tracemalloc
import zlib

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import strategies as st
from PIL import Image

from vqvae_jax import __main__ as cli
from vqvae_jax.codec import compose, compression, entropy, integer_prior, registry, vqz
from vqvae_jax.codec.vqz import FormatError, Header
from vqvae_jax.errors import UserError
from vqvae_jax.models.prior import GatedPixelCNN
from vqvae_jax.models.vqvae import VQVAE

K = 16
GOLDEN = os.path.join(os.path.dirname(__file__), 'golden')
# sha256 of the files in tests/golden/ (a format or coder change must be deliberate:
# regenerate with VQVAE_REGEN_GOLDEN=1 and update these).
# fixed.vqz and prior.vqz are version 1 (rebuilt by `_v1_file`), *_v2.vqz version 2.
GOLDEN_SHA256 = {
    'fixed.vqz': '2b968fcf522fd0681ef67d67447428cbc799aef575d0274b4ae890afaf1de84e',
    'prior.vqz': '126d0a914007eac66f43a12560bd3e512769dd6764cf5e8e4f3382637f0008cc',
    'fixed_v2.vqz': '1bbb1e1d52de697f3b732a24aa242142a8aa7e5064efe458628fbd9867234513',
    'prior_v2.vqz': '7ff08a9b901b2932c975828b2cc55c08f4d3251333953eb707920f36370d0630',
}
SETTINGS = hypothesis.settings(max_examples=40, deadline=None,
                               suppress_health_check=[hypothesis.HealthCheck.too_slow])


def _seeded(module, seed, *args):
  """Variables of `module` from a NumPy generator (no compilation; the same on every
  machine): kernels U(+-sqrt(6 / fan_in)), BatchNorm statistics 0 and 1."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path[-1:])
    u = rng.random(leaf.shape) * 2.0 - 1.0
    if 'mean' in name or 'var' in name or 'scale' in name:
      return np.full(leaf.shape, 'mean' not in name, np.float32)
    if 'kernel' in name:
      u *= np.sqrt(6.0 / np.prod(leaf.shape[:-1]))
    elif 'bias' in name:
      u *= 0.1
    return u.astype(np.float32)

  shapes = jax.eval_shape(module.init, jax.random.key(0), *args)
  return jax.tree_util.tree_map_with_path(fill, shapes)


@functools.lru_cache(maxsize=None)
def _codec(channels=1, seed=0, with_prior=True):
  model = VQVAE(channels=channels, hidden=8, k=K)
  variables = _seeded(model, seed, jnp.zeros((1, 8, 8, channels)))
  prior = GatedPixelCNN(num_codes=K, num_classes=3, hidden=8, num_layers=2, head_hidden=16)
  params = _seeded(prior, seed + 100, jnp.zeros((1, 2, 2), jnp.int32),
                   jnp.zeros((1,), jnp.int32))['params']
  if not with_prior:
    return compression.make_codec(model, variables, ('a', 'b', 'c'))
  rng = np.random.default_rng(seed + 200)
  coder = integer_prior.quantize(prior, params, rng.integers(0, K, (32, 4, 4)),
                                 rng.integers(0, 3, 32))
  return compression.make_codec(model, variables, ('a', 'b', 'c'), prior, params, coder)


def _image(h, w, c=1, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def _golden_image():
  """A fixed 10 x 13 grayscale pattern (not a multiple of 4: padding is covered)."""
  i, j = np.mgrid[:10, :13]
  return ((i * 37 + j * j * 11 + (i * j) % 7 * 19) % 256).astype(np.uint8)[..., None]


# --- file format -------------------------------------------------------------

@SETTINGS
@hypothesis.given(method=st.sampled_from([0, 1]), channels=st.sampled_from([1, 3]),
                  fps=st.binary(min_size=8, max_size=8), height=st.integers(1, 65535),
                  width=st.integers(1, 65535), k=st.integers(2, 65535),
                  label=st.none() | st.integers(0, 65534), crc=st.integers(0, 2**32 - 1),
                  payload=st.binary(max_size=64))
def test_header_fields_round_trip(method, channels, fps, height, width, k, label, crc,
                                  payload):
  gh, gw = vqz.grid_shape(height, width)
  header = Header(method=method, channels=channels, model_fingerprint=fps[:4],
                  prior_fingerprint=fps[4:] if method == 1 else bytes(4), height=height,
                  width=width, grid_height=gh, grid_width=gw, k=k, label=label, codes_crc=crc)
  data = vqz.pack(header, payload)
  assert len(data) == vqz.HEADER_SIZE_V1 + len(payload)
  assert data[:4] == b'VQVZ' and data[4] == 1
  assert vqz._unpack_v1(data, 'x') == (header, payload)  # pylint: disable=protected-access


def _binding(k=K, channels=1, model=b'\1\2\3\4', prior=b'\5\6\7\x08'):
  return vqz.Binding(model, prior, k, channels)


@SETTINGS
@hypothesis.given(method=st.sampled_from([0, 1]), side=st.integers(1, 65535),
                  other=st.integers(1, 8), square=st.booleans(), tall=st.booleans(),
                  label=st.none() | st.integers(0, 65534), k=st.integers(2, 2**20),
                  seed=st.integers(0, 99))
def test_v2_header_round_trip_and_crc_binding(method, side, other, square, tall, label, k,
                                             seed):
  """Every field survives; the header is 8 bytes for a small square image with a
  small label; the CRC changes with every model field, the label and the shape."""
  side = min(side, 64) if square else side
  height, width = (side, side) if square else ((side, other) if tall else (other, side))
  grid = vqz.grid_shape(height, width)
  codes = np.random.default_rng(seed).integers(0, k, grid)
  binding = _binding(k, prior=b'\5\6\7\x08' if method else bytes(4))
  payload = (vqz.pack_fixed(codes, k) if method == 0 else
             bytes(max(3, vqz.min_prior_payload(codes.size))))
  data = vqz.pack_v2(method, (height, width), label, binding, payload, codes)
  header, got = vqz.unpack(data)
  assert got == payload and data[:2] == b'V\xa2'
  assert (header.method, header.height, header.width, header.label) == (method, height, width,
                                                                       label)
  assert len(data) - len(payload) == vqz.header_size(height, width, label)
  if height == width and height < 128 and (label is None or label < 15):
    assert len(data) - len(payload) == 8
  vqz.check_v2(header, binding, payload, codes, 'x')
  others = [_binding(k + 1, prior=binding.prior_fingerprint),
            _binding(k, 3, prior=binding.prior_fingerprint),
            _binding(k, model=b'\1\2\3\5', prior=binding.prior_fingerprint)]
  for other_binding in others:
    with pytest.raises(FormatError, match='CRC'):
      vqz.check_v2(header, other_binding, payload, codes, 'x')
  relabelled = dataclasses.replace(header, label=None if label == 0 else 0)
  with pytest.raises(FormatError, match='CRC'):
    vqz.check_v2(relabelled, binding, payload, codes, 'x')
  if height != width:
    transposed = dataclasses.replace(header, height=width, width=height)
    with pytest.raises(FormatError, match='CRC'):
      vqz.check_v2(transposed, binding, payload, codes.reshape(transposed.grid), 'x')


@SETTINGS
@hypothesis.given(k=st.integers(2, 70000), n=st.integers(0, 50), seed=st.integers(0, 99))
def test_fixed_length_packing_round_trip(k, n, seed):
  codes = np.random.default_rng(seed).integers(0, k, (n, 1))
  payload = vqz.pack_fixed(codes, k)
  bits = int(np.ceil(np.log2(k)))
  assert vqz.bits_per_code(k) == bits
  assert len(payload) == -(-n * bits // 8)
  np.testing.assert_array_equal(vqz.unpack_fixed(payload, (n, 1), k), codes)


def test_grid_shape_pads_to_multiple_of_four():
  assert vqz.grid_shape(28, 28) == (7, 7)
  assert vqz.grid_shape(29, 1) == (8, 1)
  image = _image(5, 6)
  padded = compression.pad_image(image)
  assert padded.shape == (8, 8, 1)
  np.testing.assert_array_equal(padded[:5, :6], image)
  np.testing.assert_array_equal(padded[7, 7], image[4, 5])


# --- quantisation and the range coder -----------------------------------------

def test_frequency_tables_are_valid_and_follow_the_logits():
  assert entropy.weight_table()[0] == 2**36
  assert entropy.weight_table()[64] == round(2**36 / np.e)
  logits = np.random.default_rng(0).normal(0, 5, (50, K)).astype(np.float32)
  logits[0] = 0.0
  logits[1, 3] = 1e4
  freqs = entropy.frequencies(logits)
  assert freqs.dtype == np.int64 and freqs.min() >= 1
  np.testing.assert_array_equal(freqs.sum(-1), 2**24)
  assert np.ptp(freqs[0][1:]) == 0 and freqs[1, 3] == 2**24 - (K - 1)
  order = np.argsort(logits, axis=-1, kind='stable')
  assert np.all(np.diff(np.take_along_axis(freqs, order, -1), axis=-1) >= 0)
  # The tables are close to the softmax (64 steps per nat).
  probs = np.exp(logits[2:] - logits[2:].max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  big = probs > 1e-3
  np.testing.assert_allclose((freqs[2:] / 2**24)[big], probs[big], rtol=0.02)
  with pytest.raises(ValueError):
    entropy.frequencies(np.full((2, K), np.nan, np.float32))


def _reference_frequencies(int_logits):
  """The quantisation rule written with Python integers, row by row."""
  table = [int(w) for w in entropy.weight_table()]
  out = []
  for row in np.asarray(int_logits).reshape(-1, int_logits.shape[-1]).tolist():
    top = max(row)
    w = [table[min(top - x, entropy.MAX_STEPS)] for x in row]
    free = 2**entropy.PRECISION - len(row)
    f = [x * free // sum(w) for x in w]
    f[w.index(max(w))] += free - sum(f)
    out.append([x + 1 for x in f])
  return np.array(out, np.int64).reshape(int_logits.shape)


@pytest.mark.parametrize('k', [2, 5, 512])
def test_integer_frequencies_equal_exact_integer_division(k):
  """The chunked float-estimate-and-correct division gives the integer rule's
  tables exactly: random logits, ties, saturated steps, more rows than a chunk."""
  rng = np.random.default_rng(k)
  rows = entropy.ROWS * 2 + 3
  logits = rng.integers(-4000, 4000, (rows, k)).astype(np.int32)
  logits[0] = 7                                  # all equal
  logits[1] = rng.integers(0, 2, k) * 3000       # ties at the top and far below
  logits[2, 0], logits[2, 1:] = 10**6, -10**6    # every other step saturated
  logits[3] = rng.integers(-3, 3, k)             # near-uniform
  got = entropy.frequencies_from_logits(logits.reshape(rows, 1, k))
  assert got.shape == (rows, 1, k)
  np.testing.assert_array_equal(got[:, 0], _reference_frequencies(logits))
  with pytest.raises(ValueError):
    entropy.frequencies_from_logits(logits.astype(np.float32))


@pytest.mark.parametrize('source', ['sampled', 'uniform'])
def test_payload_length_matches_the_prior(source):
  """The coder is honest: bytes within 1% + 4 bytes of sum(-log2 p)."""
  codec = _codec()
  shape = (6, 6)
  if source == 'sampled':  # codes the prior finds likely: drawn from its conditionals
    rng = np.random.default_rng(3)

    def draw(p, logits):
      del p
      probs = np.exp(logits[1] - logits[1].max())
      return rng.choice(K, p=probs / probs.sum())

    codes = entropy._run(codec.prior, codec.prior_params, shape, draw)[0]  # pylint: disable=protected-access
  else:
    codes = np.random.default_rng(1).integers(0, K, shape)
  payload, label = entropy.encode(codec.prior, codec.prior_params, codes, label=1)
  assert label == 1
  logits = entropy.prior_logits(codec.prior, codec.prior_params, codes)[:, 1]
  ideal = entropy.ideal_bits(logits, codes)
  full = np.asarray(codec.prior.apply({'params': codec.prior_params}, codes[None],
                                      jnp.array([1])))[0].reshape(-1, K)
  assert abs(entropy.ideal_bits(full, codes) - ideal) < 1e-3
  assert abs(8 * len(payload) - ideal) <= 0.01 * ideal + 32, (len(payload), ideal / 8)
  table = entropy.table_bits(entropy.frequencies(logits), codes)
  assert abs(table - ideal) <= 0.005 * ideal + 0.1


def test_label_search_keeps_the_shortest_payload():
  codec = _codec()
  codes = np.random.default_rng(2).integers(0, K, (4, 5))
  best, label = entropy.encode(codec.prior, codec.prior_params, codes)
  sizes = [len(entropy.encode(codec.prior, codec.prior_params, codes, y)[0])
           for y in range(3)]
  assert len(best) == min(sizes) and sizes[label] == min(sizes)
  assert sizes.index(min(sizes)) == label


# --- round trips --------------------------------------------------------------

@pytest.mark.parametrize('method', ['fixed', 'prior'])
@pytest.mark.parametrize('size', [(12, 16), (10, 13), (3, 7)])
def test_round_trip_of_random_images_is_bit_exact(method, size):
  codec = _codec()
  for seed in range(2):
    image = _image(*size, seed=seed)
    result = compression.compress(codec, image, method)
    header, codes, decoded = compression.decode_file(codec, result.data)
    np.testing.assert_array_equal(codes, result.codes)
    np.testing.assert_array_equal(decoded, result.reconstruction)
    assert decoded.shape == image.shape
    assert header.method == compression.METHODS[method]
    assert (header.label is None) == (method == 'fixed')
    assert result.psnr == compression.psnr(image, decoded)


def test_compress_batch_without_reconstruction_writes_the_same_files():
  codec = _codec()
  images = [_image(12, 16, seed=s) for s in range(3)] + [_image(3, 7, seed=9)]
  full = compression.compress_batch(codec, images)
  quick = compression.compress_batch(codec, images, reconstruct=False)
  for a, b in zip(full, quick):
    assert a.data == b.data and b.reconstruction is None and b.psnr is None
    np.testing.assert_array_equal(a.codes, b.codes)


@pytest.mark.parametrize('method', ['fixed', 'prior'])
def test_round_trip_of_random_codes_is_bit_exact(method):
  codec = _codec()
  rng = np.random.default_rng(5)
  for shape, label in [((3, 4), None), ((3, 4), 2), ((1, 2), 0)]:
    codes = rng.integers(0, K, shape)
    data = compression.compress_codes(codec, codes, (4 * shape[0], 4 * shape[1] - 1), method,
                                      label)
    header, decoded = compression.read_codes(codec, data)
    np.testing.assert_array_equal(decoded, codes)
    if label is not None:
      assert header.label == label


def test_rgb_round_trip_and_channel_errors(tmp_path):
  codec = _codec(channels=3, with_prior=False)
  image = _image(9, 6, 3, seed=4)
  result = compression.compress(codec, image, 'fixed')
  np.testing.assert_array_equal(compression.decompress(codec, result.data), result.reconstruction)
  with pytest.raises(UserError, match='prior'):
    compression.compress(codec, image, 'prior')
  with pytest.raises(UserError, match='3-channel'):
    compression.compress(codec, image[..., :1], 'fixed')
  Image.fromarray(image[..., 0]).save(tmp_path / 'gray.png')
  Image.fromarray(image).save(tmp_path / 'colour.png')
  with pytest.raises(UserError, match='colour'):
    compression.load_image(str(tmp_path / 'gray.png'), 3)
  with pytest.raises(UserError, match='grayscale'):
    compression.load_image(str(tmp_path / 'colour.png'), 1)
  Image.fromarray(np.repeat(image[..., :1], 3, -1)).save(tmp_path / 'grey_rgb.png')
  assert compression.load_image(str(tmp_path / 'grey_rgb.png'), 1).shape == (9, 6, 1)
  (tmp_path / 'junk.png').write_bytes(b'not an image')
  with pytest.raises(UserError, match='cannot read'):
    compression.load_image(str(tmp_path / 'junk.png'), 1)
  Image.fromarray(np.full((4, 5), 40000, np.uint16)).save(tmp_path / 'deep.png')
  with pytest.raises(UserError, match='more than 8 bits'):  # never silently clipped
    compression.load_image(str(tmp_path / 'deep.png'), 1)


# --- golden files -------------------------------------------------------------

def _v1_file(codec, image, method):
  """A version-1 file, built as the version-1 writer did (`vqz.pack`)."""
  codes = compression.encode_images(codec, compression.pad_image(image)[None])[0]
  if method == 'prior':
    payload, label = entropy.encode(codec.prior, codec.prior_params, codes)
  else:
    payload, label = vqz.pack_fixed(codes, K), None
  header = Header(method=compression.METHODS[method], channels=codec.channels,
                  model_fingerprint=codec.model_fingerprint,
                  prior_fingerprint=codec.prior_fingerprint if method == 'prior' else bytes(4),
                  height=image.shape[0], width=image.shape[1], grid_height=codes.shape[0],
                  grid_width=codes.shape[1], k=K, label=label,
                  codes_crc=vqz.codes_crc(codes))
  return vqz.pack(header, payload)


def _file(codec, image, method, version):
  if version == 1:
    return _v1_file(codec, image, method)
  return compression.compress(codec, image, method).data


@pytest.mark.parametrize('version', [1, 2])
@pytest.mark.parametrize('method', ['fixed', 'prior'])
def test_golden_file(method, version):
  """A fixed seeded model compresses a fixed image to known bytes (version 2, what
  `compress` writes; version 1, what the old writer wrote), and both decode to
  the codes the model gives the image now."""
  codec = _codec()
  data = _file(codec, _golden_image(), method, version)
  name = f'{method}.vqz' if version == 1 else f'{method}_v2.vqz'
  path = os.path.join(GOLDEN, name)
  if os.environ.get('VQVAE_REGEN_GOLDEN'):
    os.makedirs(GOLDEN, exist_ok=True)
    with open(path, 'wb') as f:
      f.write(data)
    print(name, hashlib.sha256(data).hexdigest())
  with open(path, 'rb') as f:
    golden = f.read()
  assert hashlib.sha256(golden).hexdigest() == GOLDEN_SHA256[name]
  assert hashlib.sha256(data).hexdigest() == GOLDEN_SHA256[name], (
      'the compressed bytes changed: a format or coder change must bump the format '
      'version; regenerate with VQVAE_REGEN_GOLDEN=1 only if it is intended')
  header, codes = compression.read_codes(codec, golden)
  assert header.version == version
  expected = compression.encode_images(codec, compression.pad_image(_golden_image())[None])[0]
  np.testing.assert_array_equal(codes, expected)
  assert compression.decompress(codec, golden).shape == (10, 13, 1)


# --- errors and fuzzing --------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _sample_file(method, version=2):
  return _file(_codec(), _image(9, 13, seed=9), method, version)


def _with_checksum(data: bytes) -> bytes:
  """Recomputes a version-1 checksum so that a mutation reaches the later checks."""
  size = vqz.HEADER_SIZE_V1
  fields, payload = data[:size - 4], data[size:]
  crc = zlib.crc32(payload, zlib.crc32(fields))
  return fields + crc.to_bytes(4, 'big') + payload


def _v2_with(data: bytes, **fields) -> bytes:
  """A version-2 file with header fields replaced (its fingerprint and CRC kept)."""
  header, payload = vqz.unpack(data)
  new = dataclasses.replace(header, **fields)
  prefix = vqz._prefix_v2(new)  # pylint: disable=protected-access
  return prefix + new.crc.to_bytes(2, 'big') + payload


def test_clear_errors_for_bad_files():
  codec = _codec()
  v1, v2 = _sample_file('prior', 1), _sample_file('prior')
  cases = {
      b'': 'not a vqvae', b'VQ': 'truncated', b'V': 'truncated', b'GIF89a....': 'not a vqvae-jax',
      v1[:4] + bytes([2]) + v1[5:]: 'version 2', b'V\xa3' + v2[2:]: 'version 3',
      b'V\xa1' + v2[2:]: 'version 1',
      v1[:30]: 'truncated', v1[:-1]: 'checksum', v1[:-3] + b'xyz': 'checksum',
      v1 + b'\0': 'checksum', v2[:5]: 'truncated', v2[:3]: 'truncated',
      v2[:-1]: 'CRC|could not be decoded', v2[:-3] + b'xyz': 'CRC|could not be decoded',
      v2 + b'\1': 'CRC',
      v2[:2] + b'\x83\x80\x00' + v2[3:]: 'minimally',
      v2[:2] + bytes([v2[2] | 3]) + v2[3:]: 'method',
  }
  for data, message in cases.items():
    with pytest.raises(FormatError, match=message):
      compression.decompress(codec, data)
  for good in (v1, v2):
    with pytest.raises(UserError, match='another (VQ-VAE|model)'):
      compression.decompress(_codec(seed=1), good)
    with pytest.raises(UserError, match='--prior'):
      compression.decompress(_codec(with_prior=False), good)
  codes_crc = bytearray(v1)
  codes_crc[27] ^= 1
  with pytest.raises(FormatError, match='CRC'):
    compression.decompress(codec, _with_checksum(bytes(codes_crc)))
  crc = bytearray(v2)
  crc[-len(vqz.unpack(v2)[1]) - 1] ^= 1
  with pytest.raises(FormatError, match='CRC'):
    compression.decompress(codec, bytes(crc))


@pytest.mark.parametrize('method', ['fixed', 'prior'])
def test_v2_transposed_grid_or_other_label_is_caught(method):
  """Issue 15: a transposed grid (same number of codes) or another label, with the
  fingerprint and CRC left valid, is a FormatError, never a scrambled image."""
  codec = _codec()
  data = compression.compress(codec, _image(12, 16, seed=3), method, label=1).data
  for edit in (dict(height=16, width=12), dict(label=2), dict(label=None)):
    with pytest.raises(FormatError, match='CRC|no label'):
      compression.decompress(codec, _v2_with(data, **edit))


def test_v2_wrong_model_with_a_colliding_fingerprint_is_caught():
  """The 2-byte fingerprint may collide; the CRC covers the full fingerprints."""
  codec = _codec(with_prior=False)
  data = compression.compress(codec, _image(8, 8), 'fixed').data
  target, i = codec.pair_fingerprint(vqz.FIXED), 0
  while True:
    fp = i.to_bytes(4, 'big')
    if fp != codec.model_fingerprint and vqz.pair_fingerprint(fp, None) == target:
      break
    i += 1
  impostor = dataclasses.replace(_codec(seed=1, with_prior=False), model_fingerprint=fp)
  assert impostor.pair_fingerprint(vqz.FIXED) == target
  with pytest.raises(FormatError, match='CRC'):
    compression.decompress(impostor, data)


def _decode_or_user_error(data):
  codec = _codec()
  try:
    image = compression.decompress(codec, data)
  except UserError:
    return
  header, _ = vqz.unpack(data)
  assert image.shape == (header.height, header.width, 1)


@SETTINGS
@hypothesis.given(data=st.binary(max_size=80))
def test_fuzz_random_bytes(data):
  _decode_or_user_error(data)
  _decode_or_user_error(b'VQVZ\x01' + data)
  _decode_or_user_error(b'V\xa2' + data)
  _decode_or_user_error(_sample_file('prior')[:9] + data)


@SETTINGS
@hypothesis.given(method=st.sampled_from(['fixed', 'prior']), version=st.sampled_from([1, 2]),
                  fix_checksum=st.booleans(),
                  edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)),
                                 min_size=1, max_size=4),
                  cut=st.integers(0, 80))
def test_fuzz_mutated_files(method, version, fix_checksum, edits, cut):
  data = bytearray(_sample_file(method, version))
  for pos, value in edits:
    if pos < len(data):
      data[pos] = value
  data = bytes(data[:len(data) - cut % (len(data) + 1)])
  if version == 1 and fix_checksum and len(data) >= vqz.HEADER_SIZE_V1:
    data = _with_checksum(data)
  _decode_or_user_error(data)


# --- bounded work on forged files ------------------------------------------------

def _forged(version, side, payload=None):
  """The prior-coded sample file claiming a side x side image (v1: checksum redone)."""
  data = _sample_file('prior', version)
  header, old = vqz.unpack(data)
  payload = old if payload is None else payload
  gh, gw = vqz.grid_shape(side, side)
  if version == 2:
    return _v2_with(data, height=side, width=side)[:-len(old)] + payload
  fields = bytearray(data[:vqz.HEADER_SIZE_V1])
  fields[15:23] = np.array([side, side, gh, gw], '>u2').tobytes()
  return _with_checksum(bytes(fields) + payload)


def _measure(fn):
  """-> (seconds, peak traced Python/NumPy bytes, growth of the peak RSS in bytes)."""
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  tracemalloc.start()
  start = time.perf_counter()
  try:
    fn()
  finally:
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
  return seconds, peak, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) * 1024


@pytest.mark.parametrize('version', [1, 2])
@pytest.mark.parametrize('side', [65535, 8192, 2048])
def test_forged_sizes_are_refused_fast_and_small(version, side):
  """Issue 15: a 28x28-sized payload behind a forged huge size fails with the user
  error in < 1 s and < 200 MB, before the prior runs (decompress and info)."""
  codec, data = _codec(), _forged(version, side)
  for call in (lambda: compression.decompress(codec, data), lambda: compression.info(data)):
    def refused():
      with pytest.raises(FormatError, match='forged'):
        call()
    seconds, peak, rss = _measure(refused)
    print(f'v{version} {side}x{side}: {seconds * 1e3:.1f} ms, traced peak {peak / 1e6:.2f} MB, '
          f'RSS growth {rss / 1e6:.1f} MB')
    assert seconds < 1.0 and peak < 200e6 and rss < 200e6


def test_memory_budget_refuses_a_proportionate_payload():
  """A forged 65535x65535 prior file with a payload long enough for the length
  rule is refused by the code / memory limits before anything is allocated."""
  codec = _codec()
  n = vqz.grid_shape(65535, 65535)
  payload = bytes(vqz.min_prior_payload(n[0] * n[1]))
  for version in (1, 2):
    data = _forged(version, 65535, payload)
    def refused(data=data):
      with pytest.raises(UserError, match='GiB'):
        compression.decompress(codec, data)
    seconds, peak, _ = _measure(refused)
    assert seconds < 1.0 and peak < 3 * len(data) + 50e6
  assert compression.prior_memory(codec.prior, 1000) == 1000 * 3 * 4 * (8 * 3 + 2)


def test_range_decoding_stops_at_the_first_error(caplog):
  """An undecodable payload aborts the scan at once instead of running the prior
  over the whole grid, without JAX logging a traceback; coding works as before
  afterwards."""
  codec = _codec()
  shape = (40, 40)
  start = time.perf_counter()  # compiles the scan decode uses, then runs all of it
  entropy.prior_logits(codec.prior, codec.prior_params, np.zeros(shape, np.int32))
  full = time.perf_counter() - start
  start = time.perf_counter()
  with pytest.raises(FormatError, match='could not be decoded'):
    entropy.decode(codec.prior, codec.prior_params, b'\xff' * 12, shape, 0)
  assert time.perf_counter() - start < full / 4
  assert 'Traceback' not in caplog.text and 'callback failed' not in caplog.text
  codes = np.random.default_rng(0).integers(0, K, (3, 4))
  payload, _ = entropy.encode(codec.prior, codec.prior_params, codes, 1)
  padded = payload + bytes(9)  # zero bytes past the end: what the writer may pad with
  np.testing.assert_array_equal(
      entropy.decode(codec.prior, codec.prior_params, padded, (3, 4), 1), codes)


def test_min_payload_rule():
  assert vqz.min_prior_payload(vqz.FREE_CODES) == 0
  per_byte = 8 * vqz.CODES_PER_PAYLOAD_BIT
  assert vqz.min_prior_payload(vqz.FREE_CODES + 1) == 1
  assert vqz.min_prior_payload(vqz.FREE_CODES + per_byte + 1) == 2


@pytest.mark.parametrize('version', [1, 2])
def test_info_checks_fixed_payload_length(version):
  """12 codes of 4 bits: 6 bytes. Version 2 does not store K: 5 bytes fit 3-bit
  codes (the model's K then refuses them), 4 bytes fit no code size."""
  data = _sample_file('fixed', version)
  assert compression.info(data)['bits_per_code'] == [4]
  fix = (lambda d: d) if version == 2 else _with_checksum
  with pytest.raises(FormatError, match='cannot hold'):
    compression.info(fix(data[:-2]))
  if version == 2:
    assert compression.info(data[:-1])['bits_per_code'] == [3]
  with pytest.raises(FormatError):
    compression.decompress(_codec(), fix(data[:-1]))


def test_info_needs_no_model():
  fields = compression.info(_sample_file('prior'))
  assert fields['method'] == 'prior' and fields['image_size'] == [9, 13]
  assert fields['grid'] == [3, 4] and fields['label'] in (0, 1, 2) and fields['version'] == 2
  assert fields['fingerprint'] == _codec().pair_fingerprint(vqz.PRIOR).hex()
  assert fields['file_bytes'] == len(_sample_file('prior')) and fields['header_bytes'] == 9
  old = compression.info(_sample_file('prior', 1))
  assert old['k'] == K and old['model_fingerprint'] == _codec().model_fingerprint.hex()


# --- composition and the command line -------------------------------------------

def test_compose_masks_and_codes(tmp_path):
  assert compose.named_mask('left', (2, 3)).tolist() == [[True, True, False]] * 2
  assert compose.named_mask('bottom', (3, 1)).tolist() == [[False], [False], [True]]
  a, b = np.zeros((2, 3), np.int32), np.ones((2, 3), np.int32)
  np.testing.assert_array_equal(compose.compose_codes(a, b, compose.named_mask('right', (2, 3))),
                                [[0, 0, 1], [0, 0, 1]])
  mask = np.zeros((8, 12), np.uint8)
  mask[:, 8:] = 255
  Image.fromarray(mask).save(tmp_path / 'mask.png')
  np.testing.assert_array_equal(compose.load_mask(str(tmp_path / 'mask.png'), (2, 3)),
                                compose.named_mask('right', (2, 3)))
  with pytest.raises(UserError, match='same code grid'):
    compose.compose_codes(a, b[:1], compose.named_mask('left', (2, 3)))
  with pytest.raises(UserError, match='neither'):
    compose.load_mask('diagonal', (2, 3))


@pytest.fixture
def tiny_cli(monkeypatch, tmp_path):
  """The CLI with the tiny codec for any folders (each load recorded in `.loads`),
  a registry in tmp_path/cache and no pretrained folders."""
  loads = []

  def load_codec(model=None, prior=None):
    loads.append((model, prior))
    return _codec()

  monkeypatch.setattr(compression, 'load_codec', load_codec)
  monkeypatch.setenv(registry.ENV, str(tmp_path / 'cache'))
  monkeypatch.setattr(registry, 'PRETRAINED', str(tmp_path / 'no-pretrained'))
  run = lambda *argv: cli.main(list(argv))
  run.loads = loads
  return run


def _exit_code(fn, *argv):
  with pytest.raises(SystemExit) as e:
    fn(*argv)
  return e.value.code


def test_cli_registry_default_names_and_verbose(tiny_cli, tmp_path, capsys, monkeypatch):
  """compress records its folders; decompress without --model/--prior finds them
  from the file, says so, writes x.png next to x.vqz and never replaces the
  original without --force; --verbose prints bpp of the real file and timing."""
  (tmp_path / 'a').mkdir()
  src = str(tmp_path / 'a' / 'im.png')
  Image.fromarray(_image(10, 13, seed=1)[..., 0]).save(src)
  original = open(src, 'rb').read()
  tiny_cli('compress', src, '--prior', 'p', '-v')
  vqz_file = tmp_path / 'a' / 'im.vqz'
  out = capsys.readouterr().out
  assert f'{vqz_file.stat().st_size} bytes' in out and ' s per image' in out
  assert registry.entries()[0]['prior'] == os.path.abspath('p')
  tiny_cli.loads.clear()
  assert _exit_code(tiny_cli, 'decompress', str(vqz_file)) == 2
  assert 'exists' in capsys.readouterr().err and open(src, 'rb').read() == original
  tiny_cli('decompress', str(vqz_file), '--force', '--verbose')
  out = capsys.readouterr().out
  assert 'from the registry' in out and os.path.abspath('p') in out and 'bpp' in out
  assert tiny_cli.loads == [(None, os.path.abspath('p'))]
  assert np.asarray(Image.open(src)).shape == (10, 13)
  monkeypatch.setenv(registry.ENV, str(tmp_path / 'empty-cache'))
  assert _exit_code(tiny_cli, 'decompress', str(vqz_file), '-o', str(tmp_path / 'x.png')) == 2
  assert 'no known model matches' in capsys.readouterr().err


def test_cli_batches_report_every_failure_and_go_on(tiny_cli, tmp_path, capsys):
  paths = []
  for name in ('a', 'junk', 'b'):
    paths.append(str(tmp_path / f'{name}.png'))
    Image.fromarray(_image(5, 6, seed=len(paths))[..., 0]).save(paths[-1])
  (tmp_path / 'junk.png').write_bytes(b'not an image')
  assert _exit_code(tiny_cli, 'compress', *paths, '--prior', 'p', '-o', str(tmp_path / 'z')) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 2 and 'junk.png' in err[0] and '1 of 3 images failed' in err[1]
  files = [str(tmp_path / 'z' / f'{n}.vqz') for n in ('a', 'junk', 'b')]
  assert not os.path.exists(files[1])
  (tmp_path / 'z' / 'junk.vqz').write_bytes(b'VQVZ\x01garbage')
  files.append(str(tmp_path / 'missing.vqz'))
  assert _exit_code(tiny_cli, 'decompress', *files, '--prior', 'p', '-o',
                    str(tmp_path / 'png')) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 3 and '2 of 4 files failed' in err[-1] and 'Traceback' not in ''.join(err)
  assert sorted(os.listdir(tmp_path / 'png')) == ['a.png', 'b.png']


@pytest.mark.parametrize('umask', [0o022, 0o077])
def test_cli_outputs_honour_the_umask(tiny_cli, tmp_path, umask):
  src = str(tmp_path / 'im.png')
  Image.fromarray(_image(5, 6)[..., 0]).save(src)
  old = os.umask(umask)
  try:
    tiny_cli('compress', src, '--model', 'm', '-o', str(tmp_path / 'o'))
    tiny_cli('decompress', str(tmp_path / 'o' / 'im.vqz'), '--model', 'm', '-o',
             str(tmp_path / 'o'))
  finally:
    os.umask(old)
  for name in ('im.vqz', 'im.png'):
    assert (tmp_path / 'o' / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_cli_compresses_folders_and_npz(tiny_cli, tmp_path, capsys):
  folder = tmp_path / 'imgs'
  folder.mkdir()
  for i in range(2):
    Image.fromarray(_image(7, 5, seed=i)[..., 0]).save(folder / f'f{i}.png')
  (folder / 'notes.txt').write_text('not an image')
  images = np.stack([_image(6, 9, seed=i) for i in range(3)])
  np.savez(tmp_path / 'batch.npz', images=images)
  tiny_cli('compress', str(folder), str(tmp_path / 'batch.npz'), '--model', 'm', '-o',
           str(tmp_path / 'out'))
  assert 'total: 5 images' in capsys.readouterr().out
  names = sorted(os.listdir(tmp_path / 'out'))
  assert names == ['batch_00000.vqz', 'batch_00001.vqz', 'batch_00002.vqz', 'f0.vqz', 'f1.vqz']
  for i in range(3):
    data = (tmp_path / 'out' / f'batch_{i:05d}.vqz').read_bytes()
    expected = compression.compress(_codec(), images[i], 'fixed').reconstruction
    np.testing.assert_array_equal(compression.decompress(_codec(), data), expected)
  np.savez(tmp_path / 'bad.npz', images=images.astype(np.float32))
  assert _exit_code(tiny_cli, 'compress', str(tmp_path / 'bad.npz'), '--model', 'm') == 2
  assert 'uint8 [N, H, W, C]' in capsys.readouterr().err


def test_cli_compress_decompress_info(tiny_cli, tmp_path, capsys):
  paths = []
  for i, size in enumerate([(3, 7), (10, 13)]):
    paths.append(str(tmp_path / f'im{i}.png'))
    Image.fromarray(_image(*size, seed=i)[..., 0]).save(paths[-1])
  out = tmp_path / 'out'
  tiny_cli('compress', *paths, '--model', 'm', '--prior', 'p', '-o', str(tmp_path / 'quiet'))
  printed = capsys.readouterr().out  # without -v: sizes only (nothing is decoded)
  assert 'bpp' in printed and 'PSNR' not in printed and 'total: 2 images' in printed
  tiny_cli('compress', *paths, '--model', 'm', '--prior', 'p', '-o', str(out), '-v')
  printed = capsys.readouterr().out
  assert 'bpp' in printed and 'PSNR' in printed and 'total: 2 images' in printed
  for name in ('im0.vqz', 'im1.vqz'):  # the same bytes either way
    assert (out / name).read_bytes() == (tmp_path / 'quiet' / name).read_bytes()
  files = [str(out / 'im0.vqz'), str(out / 'im1.vqz')]
  tiny_cli('info', files[1])
  assert "image_size: [10, 13]" in capsys.readouterr().out
  tiny_cli('decompress', *files, '--prior', 'p', '-o', str(tmp_path / 'png'), '--save-codes')
  decoded = np.asarray(Image.open(tmp_path / 'png' / 'im1.png'))
  assert decoded.shape == (10, 13)
  codes = np.load(tmp_path / 'png' / 'im1.npy')
  tiny_cli('decode-codes', str(tmp_path / 'png' / 'im1.npy'), '--model', 'm',
           '-o', str(tmp_path / 'dc.png'))
  assert np.asarray(Image.open(tmp_path / 'dc.png')).shape == (4 * codes.shape[0],
                                                              4 * codes.shape[1])
  tiny_cli('compose', paths[1], files[1], '--mask', 'top', '--model', 'm',
           '-o', str(tmp_path / 'c.png'), '--save-codes', str(tmp_path / 'c.npy'))
  np.testing.assert_array_equal(np.load(tmp_path / 'c.npy'), codes)


def test_cli_errors_exit_2(tiny_cli, tmp_path, capsys):
  bad = tmp_path / 'bad.vqz'
  bad.write_bytes(b'VQVZ\x01garbage')
  for argv in (('decompress', str(bad), '-o', str(tmp_path / 'x')),
               ('decompress', str(bad), str(bad), '-o', str(bad)),  # -o: a file, not a folder
               ('info', str(tmp_path / 'missing.vqz')),
               ('decode-codes', str(bad), '--model', 'm')):
    with pytest.raises(SystemExit) as e:
      tiny_cli(*argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'Traceback' not in err
