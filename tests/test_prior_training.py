"""Stage II end to end on a fixture: code extraction, prior training, test NLL, sampling."""
import json
import math
import os
import shutil

import jax
import numpy as np
import pytest

from fixtures import folder_snapshot, train_tiny_stages
from vqvae_jax import checkpoints, data, evaluation, runs as run_lib, states
from vqvae_jax.cli.config_files import load_config
from vqvae_jax.codec import integer_prior
from vqvae_jax.models.prior import cross_entropy
from vqvae_jax.train import prior as prior_training


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('stage2')
  old = os.environ.get('VQVAE_CACHE_DIR')
  os.environ['VQVAE_CACHE_DIR'] = str(root / 'cache')
  vq, result = train_tiny_stages(root)
  yield root, vq, result
  if old is None:
    os.environ.pop('VQVAE_CACHE_DIR', None)
  else:
    os.environ['VQVAE_CACHE_DIR'] = old


def test_codes_are_cached_and_equal_the_encoder(runs):
  root, vq, _ = runs
  model, variables, meta = run_lib.restore_vqvae(str(root / 'vq'))
  assert meta['class_names'][0] == '0'
  with np.load(root / 'prior' / 'codes' / 'test.npz') as f:
    codes, labels = f['codes'], f['labels']
  assert codes.shape == (20, 7, 7) and codes.dtype == np.int32
  assert codes.min() >= 0 and codes.max() < vq.k
  ds = data.load('mnist', 'test', vq.data_folder)
  np.testing.assert_array_equal(labels, ds.labels)
  np.testing.assert_array_equal(codes, evaluation.encode_split(model, variables, ds,
                                                              batch_size=6))
  # the same codes as the full forward pass gives (another path: VQVAE.__call__)
  np.testing.assert_array_equal(codes, evaluation.reconstruction_metrics(
      model, variables, ds, batch_size=7)[1])


def test_test_nll_is_reported_and_matches_the_restored_prior(runs):
  root, _, result = runs
  test = json.load(open(root / 'prior' / 'test_metrics.json'))
  assert test == pytest.approx(result['test'])
  # bits per dim = bits per image / (28 * 28 * 1); bits per image = 49 * bits per code
  assert test['bits_per_dim'] == pytest.approx(test['bits_per_code'] * 49 / 784, rel=1e-6)
  assert 0 < test['bits_per_code'] < 2 * math.log2(16)
  prior, params, meta = run_lib.restore_prior(str(root / 'prior'))
  assert meta['k'] == 16 and meta['grid'] == [7, 7] and meta['step'] == test['step']
  with np.load(root / 'prior' / 'codes' / 'test.npz') as f:
    codes, labels = f['codes'], f['labels']
  nats = float(cross_entropy(prior.apply({'params': params}, codes, labels), codes))
  assert nats / math.log(2) == pytest.approx(test['bits_per_code'], rel=1e-5)
  # The integer coder is written beside the checkpoints, from the best parameters.
  coder = integer_prior.load(str(root / 'prior' / 'integer_prior.npz'))
  assert np.array_equal(coder.arrays['source'],
                        np.frombuffer(checkpoints.params_digest(params), np.uint8))
  # the latest checkpoint holds exactly the parameters training ended with
  _, latest, latest_meta = run_lib.restore_prior(str(root / 'prior'), which='latest')
  assert latest_meta['step'] == result['step']
  final = jax.tree.map(lambda x: np.asarray(x[0]), result['state'].params)
  for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(latest)):
    np.testing.assert_array_equal(a, np.asarray(b))
  rows = [json.loads(l) for l in open(root / 'prior' / 'metrics.jsonl')]
  assert [r['epoch'] for r in rows if r['split'] == 'valid'] == [1, 2]
  assert sorted(os.listdir(root / 'prior' / 'samples')) == ['epoch_001.png', 'epoch_002.png']


def test_sample_command_writes_a_labelled_grid(runs, tmp_path):
  root, _, _ = runs
  from vqvae_jax.__main__ import main  # pylint: disable=g-import-not-at-top
  out = tmp_path / 's.png'
  main(['sample', '--prior', str(root / 'prior'), '-o', str(out), '--per-class', '2'])
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = np.asarray(Image.open(out))
  assert image.shape[0] == 10 * 30 + 2  # one 28-pixel row (+2 padding) per class
  # Deterministic for a seed.
  main(['sample', '--prior', str(root / 'prior'), '-o', str(tmp_path / 't.png'),
        '--per-class', '2'])
  np.testing.assert_array_equal(image, np.asarray(Image.open(tmp_path / 't.png')))


def test_sample_npz_holds_the_grid_images_and_their_labels(runs, tmp_path, capsys):
  root, _, _ = runs
  from vqvae_jax.__main__ import main  # pylint: disable=g-import-not-at-top
  main(['sample', '--prior', str(root / 'prior'), '-o', str(tmp_path / 's.npz'),
        '--per-class', '3', '--seed', '4'])
  out = capsys.readouterr().out
  assert 'class consistency:' in out and '% of 30 samples' in out
  with np.load(tmp_path / 's.npz') as f:
    images, labels = f['images'], f['labels']
  assert images.shape == (30, 28, 28, 1) and images.dtype == np.uint8
  assert labels.dtype.kind == 'i'
  np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 3))
  # The same seed's PNG shows the same images, class i in row i (2-pixel padding,
  # a 110-pixel label margin on the left).
  main(['sample', '--prior', str(root / 'prior'), '-o', str(tmp_path / 's.png'),
        '--per-class', '3', '--seed', '4', '--no-consistency'])
  assert 'class consistency' not in capsys.readouterr().out
  from PIL import Image  # pylint: disable=g-import-not-at-top
  grid = np.asarray(Image.open(tmp_path / 's.png'))
  for i in range(30):
    r, c = divmod(i, 3)
    y, x = 2 + 30 * r, 110 + 2 + 30 * c
    np.testing.assert_array_equal(grid[y:y + 28, x:x + 28, 0], images[i, ..., 0])
  with pytest.raises(SystemExit) as e:
    main(['sample', '--prior', str(root / 'prior'), '-o', str(tmp_path / 's.jpg')])
  assert e.value.code == 2 and '.npz' in capsys.readouterr().err


def test_mismatched_flags_and_folders_are_clear_errors(runs, tmp_path, capsys):
  root, _, _ = runs
  import train_prior  # pylint: disable=g-import-not-at-top
  for extra, message in ((['--k', '99'], '--k 99 does not match'),
                         (['--dataset', 'cifar10'], '--dataset cifar10 does not match')):
    with pytest.raises(SystemExit) as e:
      train_prior.main(['--model', str(root / 'vq'), '--output-folder', str(tmp_path / 'p'),
                        '--config', 'prior:tiny'] + extra)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and 'Traceback' not in err
  with pytest.raises(SystemExit) as e:  # a prior folder is not a VQ-VAE
    train_prior.main(['--model', str(root / 'prior'), '--output-folder', str(tmp_path / 'p'),
                      '--config', 'prior:tiny'])
  assert e.value.code == 2 and 'does not hold a VQ-VAE' in capsys.readouterr().err


def _refused(capsys, script, argv, folder, message):
  """Runs `script.main(argv)`: exit 2, one error line with `message`, and
  `folder` byte for byte as it was (no codes, config.json, checkpoints, ...)."""
  before = folder_snapshot(str(folder))
  with pytest.raises(SystemExit) as e:
    script.main(argv)
  err = capsys.readouterr().err
  assert e.value.code == 2 and message in err, err
  assert err.startswith('error: ') and 'Traceback' not in err
  assert folder_snapshot(str(folder)) == before


def test_refused_runs_leave_the_output_folder_as_it_was(runs, tmp_path, capsys):
  root, _, _ = runs
  import train_prior  # pylint: disable=g-import-not-at-top
  import train_vqvae  # pylint: disable=g-import-not-at-top
  vq_copy = shutil.copytree(root / 'vq', tmp_path / 'vq')
  prior_copy = shutil.copytree(root / 'prior', tmp_path / 'prior')
  shutil.rmtree(prior_copy / 'codes')  # a refused run must not write them either
  # train_prior into a VQ-VAE folder (it once wrote codes/*.npz there first)
  _refused(capsys, train_prior, ['--model', str(root / 'vq'), '--output-folder', str(vq_copy),
                                 '--config', 'prior:tiny'], vq_copy, "holds a 'vqvae' run")
  # train_prior into a prior folder of another VQ-VAE (a copy elsewhere is another --model)
  _refused(capsys, train_prior, ['--model', str(vq_copy), '--output-folder', str(prior_copy),
                                 '--config', 'prior:tiny'], prior_copy, 'model: saved')
  # train_vqvae into a prior folder
  _refused(capsys, train_vqvae, ['--config', 'mnist:tiny', '--dataset', 'mnist',
                                 '--data-folder', str(root / 'mnist'), '--output-folder',
                                 str(prior_copy)], prior_copy, "holds a 'prior' run")


def test_evaluate_keeps_codes_above_255_and_matches_a_direct_computation():
  """Regression: evaluation batches once cast int32 codes to uint8 (K = 512 broke)."""
  import functools  # pylint: disable=g-import-not-at-top
  from vqvae_jax.train.loop import AXIS, replicate  # pylint: disable=g-import-not-at-top
  k, grid = 512, (3, 4)
  rng = np.random.default_rng(0)
  codes = rng.integers(256, 512, size=(7,) + grid).astype(np.int32)  # all above 255
  labels = rng.integers(0, 3, 7).astype(np.int32)
  codeset = prior_training.CodeSet(codes, labels, ('a', 'b', 'c'))
  config = load_config('prior:tiny')
  model = run_lib.make_prior(config, k, 3)
  state = states.create_prior_state(jax.random.key(0), model, grid, 1e-3)
  p_eval = jax.pmap(functools.partial(prior_training.prior_eval_step, model=model),
                    axis_name=AXIS)
  got = prior_training.evaluate(replicate(state), codeset, 4, p_eval, (12, 16, 1))
  logits = np.asarray(model.apply({'params': state.params}, codes, labels), np.float64)
  logp = logits - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1,
                                keepdims=True)) - logits.max(-1, keepdims=True)
  bits = -np.take_along_axis(logp, codes[..., None], -1).sum() / np.log(2) / len(codes)
  assert got['bits_per_code'] == pytest.approx(bits / 12, rel=1e-5)
  assert got['bits_per_dim'] == pytest.approx(bits / (12 * 16), rel=1e-5)


def test_split_labels_follow_the_training_class_names():
  """Codes of every split are labelled by the VQ-VAE's (training) class names:
  same names pass through, reordered ones are remapped, unseen ones refused."""
  from vqvae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  images = np.zeros((4, 4, 4, 1), np.uint8)
  labels = np.asarray([0, 1, 1, 0], np.int32)
  same = data.Dataset(images, labels, ('cat', 'dog'), 'toy', 'test')
  np.testing.assert_array_equal(data.relabel(same, ['cat', 'dog']), labels)
  swapped = data.Dataset(images, labels, ('dog', 'cat'), 'toy', 'test')
  np.testing.assert_array_equal(data.relabel(swapped, ['cat', 'dog']), 1 - labels)
  subset = data.Dataset(images, np.zeros((4,), np.int32), ('dog',), 'toy', 'valid')
  np.testing.assert_array_equal(data.relabel(subset, ['cat', 'dog']), [1] * 4)
  unseen = data.Dataset(images, labels, ('cat', 'emu'), 'toy', 'valid')
  with pytest.raises(UserError, match='valid split of toy holds classes .*emu'):
    data.relabel(unseen, ['cat', 'dog'])
