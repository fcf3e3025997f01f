"""Orbax checkpoints: which steps are kept, atomicity of what is kept, and what
happens to a damaged one (real checkpoints of the tiny configs)."""
import json
import os
import shutil

import jax
import numpy as np
import pytest

from fixtures import folder_snapshot, write_mnist_folder
from vqvae_jax import checkpoints, runs as run_lib, states
from vqvae_jax.checkpoints import Checkpointer
from vqvae_jax.cli.config_files import load_config, override
from vqvae_jax.errors import UserError
from vqvae_jax.train import prior as prior_training, vqvae as vqvae_training


def test_keeps_the_latest_n_and_the_best_by_validation(tmp_path):
  """Orbax's max_to_keep with best_fn would keep the best N and drop the latest:
  the preservation policy keeps the latest 3 and the best one."""
  losses = {1: 5.0, 2: 4.0, 3: 3.0, 4: 1.0, 5: 2.0, 6: 2.5, 7: 3.5, 8: 4.5, 9: 6.0,
            10: 7.0, 11: 8.0, 12: 9.0}
  ckpt = Checkpointer(str(tmp_path / 'ck'), keep=3)
  for step, loss in losses.items():
    ckpt.save(step, {'w': np.full((3,), step, np.float32)}, {'step': step},
              {'valid_loss': loss})
  ckpt.wait()
  assert ckpt.best_step() == 4 and ckpt.latest_step() == 12
  assert sorted(ckpt.all_steps()) == [4, 10, 11, 12]
  ckpt.close()
  again = Checkpointer(str(tmp_path / 'ck'), read_only=True)  # as a new process sees it
  assert again.best_step() == 4 and sorted(again.all_steps()) == [4, 10, 11, 12]
  saved, meta = again.restore(4, {'w': np.zeros((3,), np.float32)})
  np.testing.assert_array_equal(saved['w'], np.full((3,), 4, np.float32))
  assert meta == {'step': 4}
  again.close()


# --- Damaged checkpoints ---------------------------------------------------------

def _data_file(step_dir):
  """The largest file of a checkpoint's arrays (Orbax's OCDBT data file)."""
  files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(step_dir, 'state'))
           for f in fs]
  return max(files, key=os.path.getsize)


def _rewrite(path, edit):
  with open(path, 'rb') as f:
    data = bytearray(f.read())
  data = edit(data)
  with open(path, 'wb') as f:
    f.write(data)


def _truncate(step_dir):
  _rewrite(_data_file(step_dir), lambda d: d[:len(d) // 2])


def _delete_meta(step_dir):
  shutil.rmtree(os.path.join(step_dir, 'meta'))


def _flip_bit(step_dir):
  def flip(d):
    d[len(d) // 2] ^= 0x10
    return d
  _rewrite(_data_file(step_dir), flip)


def _random_4k(step_dir):
  def scribble(d):
    at = len(d) // 4
    d[at:at + 4096] = np.random.default_rng(0).bytes(4096)
    return d
  _rewrite(_data_file(step_dir), scribble)


DAMAGES = {'truncated': _truncate, 'meta deleted': _delete_meta, 'bit flipped': _flip_bit,
           'random 4 KB': _random_4k}


def _vq_config(root, max_steps):
  c = load_config('mnist:tiny')
  override(c, 'data_folder', str(root / 'mnist'))
  override(c, 'max_steps', max_steps)
  override(c, 'ckpt_every', 3)
  override(c, 'keep_checkpoints', 5)
  return c


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """A VQ-VAE with checkpoints at steps 3, 6, 9, 12, 15 (15: best and latest), the
  same run continued without interruption to step 18, and a prior (2, 4, 6)."""
  root = tmp_path_factory.mktemp('damage')
  old = os.environ.get('VQVAE_CACHE_DIR')
  os.environ['VQVAE_CACHE_DIR'] = str(root / 'cache')
  write_mnist_folder(str(root / 'mnist'), n_train=150, n_test=20)  # train 135: 16 steps/epoch
  vqvae_training.train_vqvae(_vq_config(root, 15), str(root / 'vq'))
  vqvae_training.train_vqvae(_vq_config(root, 18), str(root / 'vq18'))
  pc = load_config('prior:tiny')
  override(pc, 'model', str(root / 'vq'))
  override(pc, 'max_steps', 6)
  override(pc, 'ckpt_every', 2)
  prior_training.train_prior(pc, str(root / 'prior'))
  yield root
  if old is None:
    os.environ.pop('VQVAE_CACHE_DIR', None)
  else:
    os.environ['VQVAE_CACHE_DIR'] = old


def _steps(folder):
  return sorted(int(d) for d in os.listdir(os.path.join(folder, 'checkpoints')) if d.isdigit())


def _copy(src, dst):
  shutil.copytree(src, dst)
  return dst


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _warnings(err):
  return [line for line in err.splitlines() if line.startswith('warning:')]


def test_every_checkpoint_carries_digests_of_its_arrays_and_meta(runs):
  step_dir = runs / 'vq' / 'checkpoints' / '15'
  with open(step_dir / 'meta' / 'metadata') as f:
    meta = json.load(f)
  ckpt = Checkpointer(str(runs / 'vq' / 'checkpoints'), read_only=True)
  tree, clean = ckpt.read(15)
  ckpt.close()
  assert meta[checkpoints.STATE_DIGEST] == checkpoints.params_digest(tree).hex()
  assert checkpoints.STATE_DIGEST not in clean and clean['step'] == 15


@pytest.mark.parametrize('damage', DAMAGES)
def test_restore_vqvae_falls_back_from_a_damaged_best_checkpoint(runs, tmp_path, capsys, damage):
  """The newest (and best) checkpoint 15 damaged: one warning naming it, and the
  variables of checkpoint 12, exactly."""
  folder = _copy(runs / 'vq', tmp_path / 'vq')
  before = _copy(runs / 'vq', tmp_path / 'only12')
  for step in (15,):
    shutil.rmtree(before / 'checkpoints' / str(step))
  _, want, _ = run_lib.restore_vqvae(str(before))
  capsys.readouterr()
  DAMAGES[damage](str(folder / 'checkpoints' / '15'))
  _, got, meta = run_lib.restore_vqvae(str(folder))
  warnings = _warnings(capsys.readouterr().err)
  assert meta['step'] == 12
  assert len(warnings) == 1 and 'checkpoints/15 is damaged' in warnings[0]
  assert 'falling back to step 12' in warnings[0]
  _assert_trees_equal(got, want)


@pytest.mark.parametrize('damage', DAMAGES)
def test_restore_prior_falls_back_from_a_damaged_best_checkpoint(runs, tmp_path, capsys, damage):
  folder = _copy(runs / 'prior', tmp_path / 'prior')
  before = _copy(runs / 'prior', tmp_path / 'only4')
  shutil.rmtree(before / 'checkpoints' / '6')
  _, want, _ = run_lib.restore_prior(str(before))
  capsys.readouterr()
  DAMAGES[damage](str(folder / 'checkpoints' / '6'))
  _, got, meta = run_lib.restore_prior(str(folder))
  warnings = _warnings(capsys.readouterr().err)
  assert meta['step'] == 4
  assert len(warnings) == 1 and 'checkpoints/6 is damaged' in warnings[0]
  _assert_trees_equal(got, want)


def test_resume_falls_back_past_four_damaged_checkpoints_and_ends_exact(runs, tmp_path, capsys):
  """15 truncated, 12 without meta, 9 with a flipped bit, 6 with random bytes:
  the rerun resumes from 3 and ends bitwise equal to the uninterrupted run; the
  damaged steps are moved (unchanged) out of the way, so they neither count as
  the latest for the keep policy nor block saving those steps again."""
  folder = _copy(runs / 'vq', tmp_path / 'vq')
  for step, damage in zip((15, 12, 9, 6), DAMAGES.values()):
    damage(str(folder / 'checkpoints' / str(step)))
  damaged = {s: folder_snapshot(str(folder / 'checkpoints' / str(s))) for s in (6, 9, 12, 15)}
  capsys.readouterr()
  vqvae_training.train_vqvae(_vq_config(runs, 18), str(folder))
  err = capsys.readouterr().err
  warned = [w for w in _warnings(err) if 'is damaged' in w]
  assert [int(w.split('checkpoints/')[1].split()[0]) for w in warned] == [15, 12, 9, 6]
  assert all('falling back to step 3' in w for w in warned)
  assert 'resuming from step 3' in err
  for step, snap in damaged.items():
    assert folder_snapshot(str(folder / 'damaged_checkpoints' / str(step))) == snap
  _, got, meta = run_lib.restore_vqvae(str(folder), which='latest')
  _, want, _ = run_lib.restore_vqvae(str(runs / 'vq18'), which='latest')
  assert meta['step'] == 18
  _assert_trees_equal(got, want)
  ckpt = Checkpointer(str(folder / 'checkpoints'), read_only=True)
  for step in ckpt.all_steps():  # every kept checkpoint is intact
    ckpt.read(step)
  # keep=5: the five newest, all written after the resume (best: 16 or 18).
  assert sorted(ckpt.all_steps()) == [9, 12, 15, 16, 18]
  ckpt.close()
  rows = [json.loads(l) for l in open(folder / 'metrics.jsonl')]
  steps = [(r['step'], r['split']) for r in rows]
  assert len(steps) == len(set(steps))


def test_no_intact_checkpoint_is_one_clear_error_and_touches_nothing(runs, tmp_path, capsys):
  folder = _copy(runs / 'vq', tmp_path / 'vq')
  damages = list(DAMAGES.values())
  for i, step in enumerate(_steps(folder)):
    damages[i % len(damages)](str(folder / 'checkpoints' / str(step)))
  before = folder_snapshot(str(folder))
  with pytest.raises(UserError, match='no intact checkpoint in .*step 15 is damaged'):
    run_lib.restore_vqvae(str(folder))
  import train_vqvae  # pylint: disable=g-import-not-at-top
  with pytest.raises(SystemExit) as e:
    train_vqvae.main(['--config', 'mnist:tiny', '--dataset', 'mnist', '--data-folder',
                      str(runs / 'mnist'), '--output-folder', str(folder), '--max-steps', '18'])
  err = capsys.readouterr().err
  assert e.value.code == 2 and 'Traceback' not in err
  assert [l for l in err.splitlines() if l.startswith('error:')] == [
      l for l in err.splitlines() if l.strip()]
  assert len(err.strip().splitlines()) == 1 and 'no intact checkpoint' in err
  assert folder_snapshot(str(folder)) == before


def test_checkpoints_without_digests_still_restore(runs, tmp_path):
  """Checkpoints written before digests existed are trusted as they are."""
  folder = _copy(runs / 'vq', tmp_path / 'vq')
  for step in _steps(folder):
    path = folder / 'checkpoints' / str(step) / 'meta' / 'metadata'
    meta = json.load(open(path))
    meta.pop(checkpoints.STATE_DIGEST)
    meta.pop(checkpoints.META_DIGEST)
    path.write_text(json.dumps(meta))
  _, got, meta = run_lib.restore_vqvae(str(folder))
  _, want, _ = run_lib.restore_vqvae(str(runs / 'vq'))
  assert meta['step'] == 15
  _assert_trees_equal(got, want)


def test_restore_template_is_traced_not_compiled_and_equals_the_initialised_state():
  """restore_vqvae / restore_prior build their templates with jax.eval_shape:
  the same tree, shapes and dtypes as an initialised state."""
  import flax.serialization  # pylint: disable=g-import-not-at-top
  vq = load_config('mnist:tiny')
  for codebook in states.CODEBOOKS:
    model = run_lib.make_model(vq)
    make = lambda: states.create_train_state(  # pylint: disable=cell-var-from-loop
        jax.random.key(0), model, (28, 28, 1), 1e-3, codebook=codebook)
    real = flax.serialization.to_state_dict(make())
    abstract = flax.serialization.to_state_dict(jax.eval_shape(make))
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(abstract))
    sig = lambda t: jax.tree.map(lambda x: (x.shape, x.dtype), t)
    assert sig(real) == sig(abstract) and len(jax.tree.leaves(real)) > 10
  prior = run_lib.make_prior(load_config('prior:tiny'), 16, 10)
  make = lambda: states.create_prior_state(jax.random.key(0), prior, (7, 7), 1e-3)
  sig = lambda t: jax.tree.map(lambda x: (x.shape, x.dtype), flax.serialization.to_state_dict(t))
  assert sig(make()) == sig(jax.eval_shape(make))
