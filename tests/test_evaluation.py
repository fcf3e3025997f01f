"""Evaluation: SSIM and PSNR against scikit-image, and `evaluate` end to end."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vqvae_jax import evaluation

skimage_metrics = pytest.importorskip('skimage.metrics')  # test-only dependency


def _pairs(shape, seed):
  rng = np.random.default_rng(seed)
  x = rng.uniform(0, 1, shape)
  y = np.clip(x + rng.normal(0, 0.2, shape), 0, 1)  # correlated, as reconstructions are
  return x.astype(np.float32), y.astype(np.float32)


@pytest.mark.parametrize('shape', [(3, 28, 28, 1), (2, 16, 21, 3), (1, 11, 11, 1)])
def test_ssim_matches_scikit_image(shape):
  x, y = _pairs(shape, seed=shape[2])
  got = np.asarray(evaluation.ssim(x, y))
  want = [skimage_metrics.structural_similarity(
      a.astype(np.float64), b.astype(np.float64), gaussian_weights=True, sigma=1.5,
      use_sample_covariance=False, data_range=1.0, channel_axis=-1) for a, b in zip(x, y)]
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
  np.testing.assert_allclose(np.asarray(evaluation.ssim(x, x)), 1.0, atol=1e-5)


def test_ssim_data_range_and_errors():
  x, y = _pairs((2, 12, 12, 1), seed=0)
  np.testing.assert_allclose(np.asarray(evaluation.ssim(255 * x, 255 * y, data_range=255.0)),
                             np.asarray(evaluation.ssim(x, y)), atol=1e-5)
  with pytest.raises(ValueError, match='at least 11'):
    evaluation.ssim(x[:, :10], y[:, :10])
  with pytest.raises(ValueError, match='one shape'):
    evaluation.ssim(x, y[:1])


def test_psnr_matches_scikit_image():
  x, y = _pairs((4, 9, 7, 3), seed=1)
  want = [skimage_metrics.peak_signal_noise_ratio(a.astype(np.float64), b.astype(np.float64),
                                                  data_range=1.0) for a, b in zip(x, y)]
  np.testing.assert_allclose(np.asarray(evaluation.psnr(x, y)), want, rtol=1e-5)


def test_gaussian_window_is_sigma_1_5_radius_5():
  w = evaluation.gaussian_window()
  assert w.shape == (11,) and w.sum() == pytest.approx(1.0) and np.argmax(w) == 5


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A tiny VQ-VAE (EMA + restart) and prior trained on a 28x28 MNIST fixture."""
  from fixtures import write_mnist_folder  # pylint: disable=g-import-not-at-top
  from vqvae_jax.train import prior as prior_training, vqvae as vqvae_training  # pylint: disable=g-import-not-at-top
  from vqvae_jax.cli.config_files import load_config, override  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('evaluation')
  old = os.environ.get('VQVAE_CACHE_DIR')
  os.environ['VQVAE_CACHE_DIR'] = str(root / 'cache')
  write_mnist_folder(str(root / 'mnist'), n_train=60, n_test=20)
  vq = load_config('mnist:tiny')
  for key, value in [('data_folder', str(root / 'mnist')), ('max_steps', 4),
                     ('codebook', 'ema'), ('restart_after', 2)]:
    override(vq, key, value)
  summary = vqvae_training.train_vqvae(vq, str(root / 'vq'))
  pc = load_config('prior:tiny')
  override(pc, 'model', str(root / 'vq'))
  override(pc, 'max_steps', 2)
  prior_training.train_prior(pc, str(root / 'prior'))
  yield root, summary
  if old is None:
    os.environ.pop('VQVAE_CACHE_DIR', None)
  else:
    os.environ['VQVAE_CACHE_DIR'] = old


def test_evaluate_library_and_cli(trained, capsys):
  root, _ = trained
  from vqvae_jax import __main__ as cli  # pylint: disable=g-import-not-at-top
  result = evaluation.evaluate(str(root / 'vq'), prior_dir=str(root / 'prior'), split='test')
  assert result['n'] == 20 and result['split'] == 'test' and result['step'] == 4
  assert result['config']['codebook'] == 'ema' and result['config']['restart_after'] == 2
  assert result['mse01'] == pytest.approx(result['mse'] / 4, rel=1e-5)
  assert 0 < result['ssim'] <= 1 and result['psnr'] > 0
  assert 1 <= result['perplexity'] <= result['codes_used'] <= result['k']
  assert result['usage'] == result['codes_used'] / result['k']
  # The codes counted are the encoder's: same grids as the prior's cached test codes.
  with np.load(root / 'prior' / 'codes' / 'test.npz') as f:
    used = len(np.unique(f['codes']))
  assert used == result['codes_used']
  # The prior's NLL equals the prior stage's own test evaluation.
  prior = result['prior']
  want = json.load(open(root / 'prior' / 'test_metrics.json'))
  assert prior['bits_per_code'] == pytest.approx(want['bits_per_code'], rel=1e-4)
  assert prior['bits_per_dim'] == pytest.approx(want['bits_per_dim'], rel=1e-4)
  # Class consistency of 100 samples per class at temperature 1 (random fixture
  # images: the number is meaningless, its bookkeeping is not).
  cc = result['class_consistency']
  assert cc['samples_per_class'] == 100 and cc['temperature'] == 1.0 and cc['reason'] is None
  assert 0.0 <= cc['value'] <= 1.0 and 0.0 <= cc['classifier_test_accuracy'] <= 1.0
  assert sorted(cc['per_class']) == [str(i) for i in range(10)]
  assert np.mean(list(cc['per_class'].values())) == pytest.approx(cc['value'])
  again = evaluation.evaluate(str(root / 'vq'), prior_dir=str(root / 'prior'), split='test',
                              consistency_per_class=100)
  assert again['class_consistency']['value'] == cc['value']  # keys from the seed
  assert os.path.isfile(os.path.join(cc['classifier'], 'meta.json'))
  # The command: JSON file, readable table, reconstruction grid.
  out = root / 'eval.json'
  cli.main(['evaluate', '--model', str(root / 'vq'), '--prior', str(root / 'prior'),
            '--output', str(out), '--recon-grid', str(root / 'grid.png')])
  printed = capsys.readouterr().out
  assert 'PSNR (dB)' in printed and 'bits/dim' in printed and 'codes used' in printed
  assert 'class consistency' in printed
  saved = json.load(open(out))
  assert saved['psnr'] == pytest.approx(result['psnr']) and saved['prior'] is not None
  assert os.path.getsize(root / 'grid.png') > 0


def test_evaluate_errors(trained, tmp_path, capsys):
  root, _ = trained
  from vqvae_jax import __main__ as cli  # pylint: disable=g-import-not-at-top
  with pytest.raises(SystemExit) as e:
    cli.main(['evaluate', '--model', str(tmp_path / 'nothing')])
  assert e.value.code == 2 and 'Traceback' not in capsys.readouterr().err
  with pytest.raises(SystemExit) as e:  # a prior folder given as the model
    cli.main(['evaluate', '--model', str(root / 'prior')])
  assert e.value.code == 2 and 'does not hold a VQ-VAE' in capsys.readouterr().err


def test_small_images_have_no_ssim_but_the_other_metrics():
  """Images under SSIM's 11-pixel window (8x8 here) are evaluated without SSIM."""
  from vqvae_jax import data  # pylint: disable=g-import-not-at-top
  from vqvae_jax.models import vqvae  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  ds = data.Dataset(rng.integers(0, 256, (5, 8, 8, 1), dtype=np.uint8),
                    np.zeros((5,), np.int32), ('a',))
  model = vqvae.VQVAE(channels=1, hidden=8, k=4)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
  metrics, codes = evaluation.reconstruction_metrics(model, variables, ds, batch_size=2)
  assert metrics['ssim'] is None and codes.shape == (5, 2, 2)
  x = ds.images.astype(np.float64) / 127.5 - 1.0
  y = np.asarray(model.apply(variables, jnp.asarray(x, jnp.float32)).x_tilde, np.float64)
  np.testing.assert_allclose(metrics['mse'], np.mean((x - y) ** 2), rtol=1e-4)
  table = evaluation.format_table({'n': 5, 'split': 'test', 'step': 0, 'k': 4, **metrics})
  assert 'SSIM' in table and 'n/a' in table
