"""Pretrained folders: parameters and config only, usable wherever a run folder is.

A tiny trained VQ-VAE + prior is exported; the folders must restore exactly
the run's inference variables, drive every command (sample, evaluate,
compress, decompress) without the run folders, refuse damage with a clear
error, and the shipped `pretrained/` folders must reproduce their recorded
test PSNR.
"""
import glob
import json
import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from fixtures import train_tiny_stages
from vqvae_jax import __main__ as cli, checkpoints, evaluation, export, pretrained, runs
from vqvae_jax.codec import compression

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = sorted(p for p in glob.glob(os.path.join(ROOT, 'pretrained', '*'))
                 if pretrained.is_pretrained(p) and pretrained.read_record(p)['kind'] == 'vqvae')


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """(root, run VQ-VAE folder, run prior folder, pretrained VQ-VAE folder)."""
  root = tmp_path_factory.mktemp('pretrained')
  old = os.environ.get('VQVAE_CACHE_DIR')
  os.environ['VQVAE_CACHE_DIR'] = str(root / 'cache')
  try:
    train_tiny_stages(root)
    # The tiny prior's samples are not classifiable: no consistency here.
    cli.main(['export', '--model', str(root / 'vq'), '--prior', str(root / 'prior'),
              '-o', str(root / 'ship' / 'tiny'), '--per-class', '0'])
    yield root, str(root / 'vq'), str(root / 'prior'), str(root / 'ship' / 'tiny')
  finally:
    if old is None:
      os.environ.pop('VQVAE_CACHE_DIR', None)
    else:
      os.environ['VQVAE_CACHE_DIR'] = old


def _leaves_equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_export_restores_the_runs_inference_variables(exported):
  _, vq, prior, ship = exported
  _, run_vars, run_meta = runs.restore_vqvae(vq)
  _, vars_, meta = runs.restore_vqvae(ship)
  _leaves_equal(run_vars, vars_)
  assert meta['class_names'] == run_meta['class_names']
  assert meta['step'] == run_meta['step'] and meta['config']['k'] == run_meta['config']['k']
  _, run_params, _ = runs.restore_prior(prior)
  _, params, prior_meta = runs.restore_prior(ship + '-prior')
  _leaves_equal(run_params, params)
  # The prior finds its VQ-VAE beside itself, wherever the pair is.
  assert prior_meta['config']['model'] == os.path.abspath(ship)
  assert prior_meta['vqvae_fingerprint'] == checkpoints.vqvae_fingerprint(vars_)
  assert os.listdir(ship) and not os.path.exists(os.path.join(ship, 'checkpoints'))


def test_moved_pair_still_works(exported, tmp_path):
  _, _, _, ship = exported
  dest = tmp_path / 'elsewhere'
  shutil.copytree(os.path.dirname(ship), dest)
  _, _, meta = runs.restore_prior(str(dest / 'tiny-prior'))
  assert meta['config']['model'] == str(dest / 'tiny')


def test_recorded_results_match_a_fresh_evaluation(exported):
  _, vq, _, ship = exported
  recorded = pretrained.results(ship)
  assert json.loads(open(os.path.join(ship, 'model.json')).read())['meta']['config'][
      'data_folder'] == ''
  fresh = evaluation.evaluate(vq)
  assert recorded['test']['psnr'] == pytest.approx(fresh['psnr'], abs=1e-4)
  assert recorded['slice']['n'] == min(export.SLICE, fresh['n'])
  prior_rec = pretrained.results(ship + '-prior')['test']
  assert prior_rec['bits_per_code'] > 0 and prior_rec['unigram_bits_per_code'] > 0


def test_commands_take_pretrained_folders(exported, tmp_path, capsys):
  root, _, prior, ship = exported
  cli.main(['sample', '--prior', ship + '-prior', '--per-class', '2', '-o',
            str(tmp_path / 's.npz'), '--no-consistency'])
  with np.load(tmp_path / 's.npz') as f:
    assert f['images'].dtype == np.uint8 and len(f['labels']) == 2 * 10
  data = str(root / 'mnist')  # export records no machine's data folder
  cli.main(['evaluate', '--prior', ship + '-prior', '--per-class', '0', '--data-folder', data])
  assert 'prior NLL (bits/code)' in capsys.readouterr().out
  assert sorted(os.listdir(ship)) == ['model.json', 'params.npz']  # nothing written there
  _, _, meta = runs.restore_vqvae(ship)
  images = runs.load_split(runs.run_config(meta, data), 'test').images[:3]
  os.makedirs(tmp_path / 'in')
  for i, image in enumerate(images):
    Image.fromarray(image[..., 0]).save(tmp_path / 'in' / f'im{i}.png')
  # A file made with the run folder decodes with the pretrained one, and back.
  cli.main(['compress', str(tmp_path / 'in'), '--prior', prior, '-o', str(tmp_path / 'a')])
  cli.main(['decompress', *sorted(glob.glob(str(tmp_path / 'a' / '*.vqz'))),
            '--prior', ship + '-prior', '-o', str(tmp_path / 'a-out')])
  cli.main(['compress', str(tmp_path / 'in'), '--prior', ship + '-prior', '-o',
            str(tmp_path / 'b')])
  for name in ('im0', 'im1', 'im2'):
    with open(tmp_path / 'a' / f'{name}.vqz', 'rb') as f1, \
         open(tmp_path / 'b' / f'{name}.vqz', 'rb') as f2:
      assert f1.read() == f2.read()
  assert len(os.listdir(tmp_path / 'a-out')) == 3
  assert sorted(os.listdir(ship + '-prior')) == ['integer_prior.npz', 'model.json',
                                                 'params.npz']


def test_damaged_folder_is_one_clear_error(exported, tmp_path, capsys):
  _, _, _, ship = exported
  bad = tmp_path / 'bad'
  shutil.copytree(ship, bad)
  with np.load(bad / 'params.npz') as f:
    arrays = {k: f[k] for k in f.files}
  name = sorted(arrays)[0]
  arrays[name] = arrays[name] + 1
  np.savez(bad / 'params.npz', **arrays)
  with pytest.raises(SystemExit) as e:
    cli.main(['evaluate', '--model', str(bad)])
  assert e.value.code == 2 and 'damaged' in capsys.readouterr().err
  (bad / 'params.npz').write_bytes(b'not a zip')
  with pytest.raises(SystemExit) as e:
    cli.main(['evaluate', '--model', str(bad)])
  assert e.value.code == 2 and 'damaged' in capsys.readouterr().err


def test_wrong_kind_and_version_are_refused(exported, tmp_path):
  _, _, _, ship = exported
  from vqvae_jax.errors import UserError
  with pytest.raises(UserError, match='pretrained vqvae, not a prior'):
    runs.restore_prior(ship)
  bad = tmp_path / 'v9'
  shutil.copytree(ship, bad)
  record = json.loads((bad / 'model.json').read_text())
  record['version'] = 9
  (bad / 'model.json').write_text(json.dumps(record))
  with pytest.raises(UserError, match='format version 9'):
    runs.restore_vqvae(str(bad))


def test_export_replaces_a_folder_only_when_complete(exported, monkeypatch):
  _, vq, _, ship = exported
  before = (os.path.join(ship, 'params.npz'), open(os.path.join(ship, 'params.npz'), 'rb').read())

  def fail(*args, **kwargs):
    raise OSError('disk full')
  monkeypatch.setattr(pretrained.fileio, 'write_json', fail)
  _, variables, meta = runs.restore_vqvae(vq)
  with pytest.raises(OSError):
    pretrained.save(ship, 'vqvae', meta, variables)
  with open(before[0], 'rb') as f:
    assert f.read() == before[1]
  assert pretrained.is_pretrained(ship)


@pytest.mark.parametrize('folder', SHIPPED, ids=[os.path.basename(p) for p in SHIPPED])
def test_shipped_weights_reproduce_their_test_psnr(folder):
  """Each committed pretrained VQ-VAE, on the first SLICE test images of its
  real data set (skipped where that data is missing; VQVAE_REQUIRE_DATA=1
  makes that a failure), within 0.05 dB of the PSNR recorded at export; a
  float16 folder's whole-test-split PSNR within 0.05 dB of its float32 model's."""
  from vqvae_jax.errors import UserError
  model, variables, meta = runs.restore_vqvae(folder)
  try:
    ds = runs.load_split(runs.run_config(meta), 'test')
  except UserError as e:
    if os.environ.get('VQVAE_REQUIRE_DATA') == '1':
      raise
    pytest.skip(f'no real test data here: {e}')
  recorded = pretrained.results(folder)['slice']
  got = export.slice_psnr(model, variables, ds, recorded['n'])
  assert got['psnr'] == pytest.approx(recorded['psnr'], abs=0.05)
  if pretrained.read_record(folder)['dtype'] == 'float16':  # allowed if it costs < 0.05 dB
    test = pretrained.results(folder)['test']
    assert abs(test['psnr'] - test['float32_psnr']) < 0.05
  prior = folder + '-prior'
  if os.path.isdir(prior):
    _, _, prior_meta = runs.restore_prior(prior)
    assert prior_meta['vqvae_fingerprint'] == checkpoints.vqvae_fingerprint(variables)
    assert os.path.exists(os.path.join(prior, compression.CODER_FILE))


def test_python_api_on_pretrained_and_run_folders(exported):
  """vqvae_jax.load: encode/decode agree with the model, compress/decompress
  round-trip, sample gives images of the asked classes' count, for a
  pretrained prior folder and the run folders alike."""
  import vqvae_jax
  root, vq, prior, ship = exported
  data = str(root / 'mnist')
  images = runs.load_split(runs.run_config(runs.restore_vqvae(vq)[2], data),
                               'test').images[:4]
  model, variables, _ = runs.restore_vqvae(vq)
  want = np.asarray(model.apply(variables, images.astype(np.float32) / 127.5 - 1.0,
                                method=type(model).encode))
  for folder in (ship + '-prior', prior):
    m = vqvae_jax.load(folder)
    codes = m.encode(images)
    np.testing.assert_array_equal(codes, want)
    recon = m.decode(codes)
    assert recon.shape == images.shape and recon.dtype == np.uint8
    blob = m.compress(images[0])
    np.testing.assert_array_equal(m.decompress(blob), recon[0])
    samples = m.sample([0, 1, m.class_names[2]], jax.random.key(0))
    assert samples.shape == (3,) + images.shape[1:] and samples.dtype == np.uint8
    np.testing.assert_array_equal(samples, m.sample([0, 1, 2], jax.random.key(0)))
    assert m.evaluate('test', data_folder=data)['prior']['bits_per_code'] > 0
  plain = vqvae_jax.load(ship)
  assert plain.prior_dir is None
  np.testing.assert_array_equal(plain.decompress(plain.compress(images[1])), recon[1])
  from vqvae_jax.errors import UserError
  with pytest.raises(UserError, match='needs a prior'):
    plain.sample([0], jax.random.key(0))
  with pytest.raises(UserError, match='uint8'):
    plain.encode(images.astype(np.float32))


@pytest.fixture(scope='module')
def exported16(exported):
  """The tiny pair exported again with float16 storage: its VQ-VAE folder."""
  root, vq, prior, _ = exported
  cli.main(['export', '--model', vq, '--prior', prior, '-o', str(root / 'ship' / 'half'),
            '--per-class', '0', '--dtype', 'float16'])
  return str(root / 'ship' / 'half')


def test_float16_folders_restore_the_rounded_model(exported, exported16):
  """float16 storage: half the bytes; restored as float32 equal to the run's
  variables rounded through float16; the prior bound to that rounded VQ-VAE."""
  _, vq, prior, ship = exported
  with np.load(os.path.join(exported16, 'params.npz')) as f:
    kinds = {f[k].dtype for k in f.files}
  assert np.dtype(np.float16) in kinds and np.dtype(np.float32) not in kinds
  def nbytes(d):
    with np.load(os.path.join(d, 'params.npz')) as f:
      return sum(f[k].nbytes for k in f.files)
  assert 2 * nbytes(exported16) == nbytes(ship)  # every array was float32
  _, run_vars, _ = runs.restore_vqvae(vq)
  _, vars16, _ = runs.restore_vqvae(exported16)
  rounded = jax.tree.map(lambda x: np.asarray(x).astype(np.float16).astype(np.float32)
                         if np.asarray(x).dtype == np.float32 else np.asarray(x), run_vars)
  _leaves_equal(rounded, vars16)
  assert any(not np.array_equal(np.asarray(a), np.asarray(b))
             for a, b in zip(jax.tree.leaves(run_vars), jax.tree.leaves(vars16)))
  _, params16, meta16 = runs.restore_prior(exported16 + '-prior')
  _, run_params, _ = runs.restore_prior(prior)
  for a, b in zip(jax.tree.leaves(run_params), jax.tree.leaves(params16)):
    np.testing.assert_array_equal(np.asarray(a).astype(np.float16).astype(np.float32), b)
  assert meta16['vqvae_fingerprint'] == checkpoints.vqvae_fingerprint(vars16)
  assert meta16['vqvae_fingerprint'] != checkpoints.vqvae_fingerprint(run_vars)


def test_float16_results_are_measured_as_shipped(exported, exported16):
  """The recorded PSNR is the float16 folder's own (a fresh evaluation of it),
  and the float32 model's is recorded beside it."""
  root, vq, _, _ = exported
  data = str(root / 'mnist')
  rec = pretrained.results(exported16)
  fresh = evaluation.evaluate(exported16, split='test', data_folder=data)
  assert rec['test']['psnr'] == pytest.approx(fresh['psnr'], abs=1e-6)
  run = evaluation.evaluate(vq, split='test', data_folder=data)
  assert rec['test']['float32_psnr'] == pytest.approx(run['psnr'], abs=1e-6)
  assert rec['slice']['float32_psnr'] is not None
  prior_rec = pretrained.results(exported16 + '-prior')
  fresh = evaluation.evaluate(exported16, split='test', prior_dir=exported16 + '-prior',
                              data_folder=data, consistency_per_class=0)
  assert prior_rec['test']['bits_per_code'] == pytest.approx(fresh['prior']['bits_per_code'],
                                                             rel=1e-6)


def test_float16_pair_codes_and_samples(exported, exported16):
  """The float16 pair compresses and decompresses with its own integer prior,
  and `vqvae_jax.load` samples from it."""
  import vqvae_jax
  root, vq, _, _ = exported
  images = runs.load_split(runs.run_config(runs.restore_vqvae(vq)[2], str(root / 'mnist')),
                           'test').images[:2]
  m = vqvae_jax.load(exported16 + '-prior')
  blob = m.compress(images[0])
  np.testing.assert_array_equal(m.decompress(blob), m.decode(m.encode(images[:1]))[0])
  assert m.sample([0, 1], jax.random.key(0)).shape == (2,) + images.shape[1:]


def test_float16_storage_refuses_values_it_cannot_hold():
  with pytest.raises(ValueError, match='float16 cannot store'):
    pretrained.stored_arrays({'params': {'w': np.array([1e5], np.float32)}}, 'float16')
  with pytest.raises(ValueError, match='dtype must be one of'):
    pretrained.stored_arrays({'params': {'w': np.zeros(1, np.float32)}}, 'bfloat16')


def test_failed_export_leaves_the_shipped_pair_as_it_was(exported, monkeypatch):
  root, vq, prior, ship = exported
  before = {d: open(os.path.join(d, 'model.json'), 'rb').read() for d in (ship, ship + '-prior')}

  def fail(*args, **kwargs):
    raise OSError('disk full')
  monkeypatch.setattr(evaluation, 'evaluate_restored', fail)
  with pytest.raises(OSError):
    export.export(vq, ship, prior_dir=prior, per_class=0)
  for d, data in before.items():
    assert open(os.path.join(d, 'model.json'), 'rb').read() == data
