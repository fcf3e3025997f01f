"""Tests of the codec: file format, fixed-length and prior entropy coding, CLI.

Tiny seeded models (no training): a VQ-VAE with hidden 8 and K = 16, a Gated
PixelCNN with 2 layers of width 8 and 3 classes; images of a few pixels.
"""
import functools
import hashlib
import os
import zlib

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import strategies as st
from PIL import Image

from vqvae_jax import __main__ as cli
from vqvae_jax import codec_format, compose, compression, prior_coding
from vqvae_jax.codec_format import FormatError, Header
from vqvae_jax.errors import UserError
from vqvae_jax.models import VQVAE
from vqvae_jax.prior import GatedPixelCNN

K = 16
GOLDEN = os.path.join(os.path.dirname(__file__), 'golden')
# sha256 of the files in tests/golden/ (a format or coder change must be deliberate:
# regenerate with VQVAE_REGEN_GOLDEN=1 and update these).
GOLDEN_SHA256 = {
    'fixed.vqz': '2b968fcf522fd0681ef67d67447428cbc799aef575d0274b4ae890afaf1de84e',
    'prior.vqz': '126d0a914007eac66f43a12560bd3e512769dd6764cf5e8e4f3382637f0008cc',
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
  kwargs = {}
  if with_prior:
    kwargs = dict(prior=prior, prior_params=params,
                  prior_fingerprint=compression.fingerprint(params))
  return compression.Codec(model=model, variables=variables, class_names=('a', 'b', 'c'),
                           model_fingerprint=compression.fingerprint(variables), **kwargs)


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
  gh, gw = codec_format.grid_shape(height, width)
  header = Header(method=method, channels=channels, model_fingerprint=fps[:4],
                  prior_fingerprint=fps[4:] if method == 1 else bytes(4), height=height,
                  width=width, grid_height=gh, grid_width=gw, k=k, label=label, codes_crc=crc)
  data = codec_format.pack(header, payload)
  assert len(data) == codec_format.HEADER_SIZE + len(payload)
  assert data[:4] == b'VQVZ' and data[4] == codec_format.VERSION
  assert codec_format.unpack(data) == (header, payload)


@SETTINGS
@hypothesis.given(k=st.integers(2, 70000), n=st.integers(0, 50), seed=st.integers(0, 99))
def test_fixed_length_packing_round_trip(k, n, seed):
  codes = np.random.default_rng(seed).integers(0, k, (n, 1))
  payload = codec_format.pack_fixed(codes, k)
  bits = int(np.ceil(np.log2(k)))
  assert codec_format.bits_per_code(k) == bits
  assert len(payload) == -(-n * bits // 8)
  np.testing.assert_array_equal(codec_format.unpack_fixed(payload, (n, 1), k), codes)


def test_grid_shape_pads_to_multiple_of_four():
  assert codec_format.grid_shape(28, 28) == (7, 7)
  assert codec_format.grid_shape(29, 1) == (8, 1)
  image = _image(5, 6)
  padded = compression.pad_image(image)
  assert padded.shape == (8, 8, 1)
  np.testing.assert_array_equal(padded[:5, :6], image)
  np.testing.assert_array_equal(padded[7, 7], image[4, 5])


# --- quantisation and the range coder -----------------------------------------

def test_frequency_tables_are_valid_and_follow_the_logits():
  assert prior_coding.weight_table()[0] == 2**36
  assert prior_coding.weight_table()[64] == round(2**36 / np.e)
  logits = np.random.default_rng(0).normal(0, 5, (50, K)).astype(np.float32)
  logits[0] = 0.0
  logits[1, 3] = 1e4
  freqs = prior_coding.frequencies(logits)
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
    prior_coding.frequencies(np.full((2, K), np.nan, np.float32))


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

    codes = prior_coding._run(codec.prior, codec.prior_params, shape, draw)[0]  # pylint: disable=protected-access
  else:
    codes = np.random.default_rng(1).integers(0, K, shape)
  payload, label = prior_coding.encode(codec.prior, codec.prior_params, codes, label=1)
  assert label == 1
  logits = prior_coding.prior_logits(codec.prior, codec.prior_params, codes)[:, 1]
  ideal = prior_coding.ideal_bits(logits, codes)
  full = np.asarray(codec.prior.apply({'params': codec.prior_params}, codes[None],
                                      jnp.array([1])))[0].reshape(-1, K)
  assert abs(prior_coding.ideal_bits(full, codes) - ideal) < 1e-3
  assert abs(8 * len(payload) - ideal) <= 0.01 * ideal + 32, (len(payload), ideal / 8)
  table = prior_coding.table_bits(prior_coding.frequencies(logits), codes)
  assert abs(table - ideal) <= 0.005 * ideal + 0.1


def test_label_search_keeps_the_shortest_payload():
  codec = _codec()
  codes = np.random.default_rng(2).integers(0, K, (4, 5))
  best, label = prior_coding.encode(codec.prior, codec.prior_params, codes)
  sizes = [len(prior_coding.encode(codec.prior, codec.prior_params, codes, y)[0])
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

@pytest.mark.parametrize('method', ['fixed', 'prior'])
def test_golden_file(method):
  """A fixed seeded model compresses a fixed image to known bytes."""
  codec = _codec()
  data = compression.compress(codec, _golden_image(), method).data
  name = f'{method}.vqz'
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
  decoded = compression.decompress(codec, golden)
  assert decoded.shape == (10, 13, 1)


# --- errors and fuzzing --------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _sample_file(method):
  return compression.compress(_codec(), _image(9, 13, seed=9), method).data


def _with_checksum(data: bytes) -> bytes:
  """Recomputes the checksum so that a mutation reaches the decoder's later checks."""
  size = codec_format.HEADER_SIZE
  fields, payload = data[:size - 4], data[size:]
  crc = zlib.crc32(payload, zlib.crc32(fields))
  return fields + crc.to_bytes(4, 'big') + payload


def test_clear_errors_for_bad_files():
  codec = _codec()
  good = _sample_file('prior')
  cases = {
      b'': 'truncated', b'VQ': 'truncated', b'GIF89a....': 'not a vqvae-jax',
      good[:4] + bytes([2]) + good[5:]: 'version 2',
      good[:30]: 'truncated', good[:-1]: 'checksum', good[:-3] + b'xyz': 'checksum',
      good + b'\0': 'checksum',
  }
  for data, message in cases.items():
    with pytest.raises(FormatError, match=message):
      compression.decompress(codec, data)
  other = _codec(seed=1)
  with pytest.raises(UserError, match='another VQ-VAE'):
    compression.decompress(other, good)
  no_prior = _codec(with_prior=False)
  with pytest.raises(UserError, match='--prior'):
    compression.decompress(no_prior, good)
  codes_crc = bytearray(good)
  codes_crc[27] ^= 1
  with pytest.raises(FormatError, match='CRC'):
    compression.decompress(codec, _with_checksum(bytes(codes_crc)))


def _decode_or_user_error(data):
  codec = _codec()
  try:
    image = compression.decompress(codec, data)
  except UserError:
    return
  header, _ = codec_format.unpack(data)
  assert image.shape == (header.height, header.width, 1)


@SETTINGS
@hypothesis.given(data=st.binary(max_size=80))
def test_fuzz_random_bytes(data):
  _decode_or_user_error(data)
  _decode_or_user_error(b'VQVZ\x01' + data)


@SETTINGS
@hypothesis.given(method=st.sampled_from(['fixed', 'prior']), fix_checksum=st.booleans(),
                  edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)),
                                 min_size=1, max_size=4),
                  cut=st.integers(0, 80))
def test_fuzz_mutated_files(method, fix_checksum, edits, cut):
  data = bytearray(_sample_file(method))
  for pos, value in edits:
    if pos < len(data):
      data[pos] = value
  data = bytes(data[:len(data) - cut % (len(data) + 1)])
  if fix_checksum and len(data) >= codec_format.HEADER_SIZE:
    data = _with_checksum(data)
  _decode_or_user_error(data)


def test_info_needs_no_model():
  fields = compression.info(_sample_file('prior'))
  assert fields['method'] == 'prior' and fields['image_size'] == [9, 13]
  assert fields['grid'] == [3, 4] and fields['k'] == K and fields['label'] in (0, 1, 2)
  assert fields['model_fingerprint'] == _codec().model_fingerprint.hex()
  assert fields['file_bytes'] == len(_sample_file('prior'))


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
def tiny_cli(monkeypatch):
  monkeypatch.setattr(compression, 'load_codec', lambda model=None, prior=None: _codec())
  return lambda *argv: cli.main(list(argv))


def test_cli_compress_decompress_info(tiny_cli, tmp_path, capsys):
  paths = []
  for i, size in enumerate([(3, 7), (10, 13)]):
    paths.append(str(tmp_path / f'im{i}.png'))
    Image.fromarray(_image(*size, seed=i)[..., 0]).save(paths[-1])
  out = tmp_path / 'out'
  tiny_cli('compress', *paths, '--model', 'm', '--prior', 'p', '-o', str(out))
  printed = capsys.readouterr().out
  assert 'bpp' in printed and 'PSNR' in printed and 'total: 2 images' in printed
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
