"""benchmarks/rate_distortion.py's comparison, rd_codecs and rd_plot on
synthetic curves and tiny images (no trained model needed)."""
import io

import numpy as np
import pytest
from PIL import Image, features

from benchmarks import rate_distortion, rd_codecs, rd_plot
from vqvae_jax.codec import compression

PSNRS = np.array([20.0, 23.0, 26.0, 29.0, 32.0])


def _baseline(family, psnrs, bpp_of, container=0.0):
  return [dict(variant='full', quality=i, psnr=float(p), bpp=float(bpp_of(p)),
               bytes=float(bpp_of(p)) * 98, container_bytes=container)
          for i, p in enumerate(psnrs)]


def _avif_rate(p):
  return np.exp(0.1 * p - 2.0)  # log rate linear in PSNR: every fit is exact


def _base():
  grid = np.linspace(18, 36, 7)
  return {'jpeg': _baseline('jpeg', grid, lambda p: 3 * _avif_rate(p)),
          'webp': _baseline('webp', grid, lambda p: 2 * _avif_rate(p)),
          'avif': _baseline('avif', grid, _avif_rate, container=30.0),
          'png': {'bpp': 5.0, 'psnr': None}}


def _ours(factors, psnrs=PSNRS):
  return [dict(label=f'p{i}', psnr=float(p), bpp=float(f * _avif_rate(p)))
          for i, (p, f) in enumerate(zip(psnrs, factors))]


def test_half_the_avif_rate_is_minus_50_percent_and_meets_the_goal():
  comp = rate_distortion.compare(_ours([0.5] * 5), _base())
  assert comp['avif']['bd_rate'] == pytest.approx(-50.0, abs=1e-6)
  assert comp['avif']['bd_rate_pchip'] == pytest.approx(-50.0, abs=1e-6)
  assert comp['jpeg']['bd_rate'] == pytest.approx(100 * (0.5 / 3 - 1), abs=1e-6)
  assert comp['avif']['overlap_db'] == pytest.approx((20.0, 32.0))
  assert all(a['ours_smaller'] and a['ratio'] == pytest.approx(2.0)
             for a in comp['avif']['at_our_points'])
  assert comp['goal']['met'] is True and comp['goal']['avif_smaller_at'] == []
  # Without its (here 30 of ~98 bytes) container AVIF is cheaper: a reference only.
  assert comp['avif_bitstream']['bd_rate'] > comp['avif']['bd_rate']


def test_a_point_where_avif_is_smaller_fails_the_goal_and_is_named():
  comp = rate_distortion.compare(_ours([0.5, 0.5, 0.5, 0.5, 1.2]), _base())
  assert comp['goal']['met'] is False
  assert comp['goal']['avif_smaller_at'] == ['p4']
  assert 'p4' in comp['goal']['why']


def test_too_few_points_or_too_narrow_is_not_judged():
  comp = rate_distortion.compare(_ours([0.5] * 3), _base())
  assert comp['avif']['bd_rate'] is None
  assert 'at least 4' in comp['avif']['bd_rate_reason']
  assert comp['goal']['met'] is None and 'needs >= 4' in comp['goal']['why']
  narrow = rate_distortion.compare(_ours([0.5] * 4, [20.0, 21.0, 22.0, 23.0]), _base())
  assert narrow['avif']['bd_rate'] == pytest.approx(-50.0, abs=1e-6)
  assert narrow['goal']['met'] is None  # 3 dB < 6 dB


def test_dominated_points_leave_our_curve():
  points = _ours([0.5] * 5)
  points.append(dict(label='worse', psnr=25.0, bpp=points[3]['bpp']))  # more bits, less PSNR
  comp = rate_distortion.compare(points, _base())
  assert comp['ours_dominated'] == ['worse']
  assert comp['ours_front'] == ['p0', 'p1', 'p2', 'p3', 'p4']


def test_plot_writes_a_png(tmp_path):
  points = _ours([0.5] * 5)
  result = {'dataset': 'synthetic', 'num_images': 3, 'points': points, 'baselines': _base(),
            'comparison': rate_distortion.compare(points, _base())}
  rd_plot.plot(result, str(tmp_path / 'rd.png'))
  with Image.open(tmp_path / 'rd.png') as im:
    assert im.format == 'PNG' and im.size == (980, 600)


def test_psnr_stats_match_the_codec_psnr():
  rng = np.random.default_rng(0)
  a = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
  b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
  stats = rd_codecs.psnr_stats(a, b)
  assert stats['psnr'] == pytest.approx(np.mean([compression.psnr(x, y) for x, y in zip(a, b)]))
  mse = np.mean((a.astype(float) - b) ** 2)
  assert stats['psnr_of_mean_mse'] == pytest.approx(10 * np.log10(255 ** 2 / mse))
  b[1] = a[1]
  assert rd_codecs.psnr_stats(a, b)['psnr'] is None
  assert rd_codecs.psnr_stats(a, b)['exact_images'] == 1


@pytest.mark.parametrize('channels', [1, 3])
def test_roundtrips_keep_the_shape_and_count_whole_files(channels):
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, (28, 28, channels), dtype=np.uint8)
  formats = ['JPEG', 'WEBP', 'PNG'] + (['AVIF'] if features.check('avif') else [])
  for fmt in formats:
    for half in (False, True):
      data, decoded = rd_codecs.roundtrip(image, fmt, half, quality=50)
      assert decoded.shape == image.shape and decoded.dtype == np.uint8
      with Image.open(io.BytesIO(data)) as im:
        assert im.format == fmt
  if 'AVIF' in formats:
    data, _ = rd_codecs.roundtrip(image, 'AVIF', quality=50, speed=8)
    head = rd_codecs.container_bytes(data)
    assert 8 < head < len(data) and data[4:8] == b'ftyp'


def test_sweeps_cover_the_quality_range():
  gray = rd_codecs.sweeps(1)
  assert {(s['family'], s['variant']) for s in gray} == {
      (f, v) for f in ('jpeg', 'webp', 'avif') for v in ('full', 'half')}
  assert all(s['qualities'][0] <= 1 and s['qualities'][-1] == 100 for s in gray)
  rgb = {(s['family'], s['variant']) for s in rd_codecs.sweeps(3)}
  assert ('avif', 'half 4:4:4') in rgb and ('jpeg', 'full 4:4:4') in rgb


@pytest.fixture(scope='module')
def tiny_point():
  """An untrained 1-channel codec (hidden 8, K 16, 3 classes) for 8x8 images."""
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from vqvae_jax.codec import integer_prior  # pylint: disable=g-import-not-at-top
  from vqvae_jax.models.vqvae import VQVAE  # pylint: disable=g-import-not-at-top
  from vqvae_jax.models.prior import GatedPixelCNN  # pylint: disable=g-import-not-at-top
  model = VQVAE(channels=1, hidden=8, k=16)
  variables = model.init(jax.random.key(0), np.zeros((1, 8, 8, 1), np.float32))
  prior = GatedPixelCNN(num_codes=16, num_classes=3, hidden=8, num_layers=2, head_hidden=16)
  params = prior.init(jax.random.key(1), np.zeros((1, 2, 2), np.int32),
                      np.zeros((1,), np.int32))['params']
  rng = np.random.default_rng(0)
  coder = integer_prior.quantize(prior, params, rng.integers(0, 16, (16, 2, 2)),
                                 rng.integers(0, 3, 16))
  codec = compression.make_codec(model, variables, ('a', 'b', 'c'), prior, params, coder)
  config = ml_collections.ConfigDict({'image_size': 8, 'hidden_size': 8})
  return rate_distortion.Point('prior-dir', 'model-dir', codec, config, 'tiny')


def _resized(image, side):
  """[H, W, 1] uint8 -> [side, side, 1], bicubic (Pillow), unchanged at its size."""
  if image.shape[0] == side:
    return image
  im = Image.fromarray(image[..., 0]).resize((side, side), Image.Resampling.BICUBIC)
  return np.asarray(im)[..., None]


@pytest.mark.parametrize('side', [8, 12])  # 12: the 8x8 model on resized images
def test_measure_point_counts_whole_files_and_decoded_images(tiny_point, side):
  rng = np.random.default_rng(side)
  images = rng.integers(0, 256, (5, side, side, 1), dtype=np.uint8)
  got = rate_distortion.measure_point(tiny_point, images, chunk=2)
  inputs = [_resized(x, 8) for x in images]
  files = [compression.compress(tiny_point.codec, x).data for x in inputs]
  decoded = [_resized(compression.decompress(tiny_point.codec, f), side) for f in files]
  assert got['bytes'] == np.mean([len(f) for f in files])
  assert got['bpp'] == pytest.approx(8 * np.mean([len(f) for f in files]) / side ** 2)
  assert got['psnr'] == pytest.approx(np.mean([compression.psnr(a, b)
                                               for a, b in zip(images, decoded)]))
  assert got['header_bytes'] + got['payload_bytes'] == pytest.approx(got['bytes'])
  assert got['decode_mismatches'] == 0 and got['resampled'] == (side != 8)
  assert got['grid'] == [2, 2] and sum(got['label_histogram']) == 5
