"""Atari Boxing frames: deterministic per seed, resumable, time-ordered splits."""
import fixtures
import numpy as np
import pytest
from fixtures import isolated_data  # pylint: disable=unused-import

from vqvae_jax import data
from vqvae_jax.data import atari

fixtures.require('Atari Boxing', fixtures.has_modules('gymnasium', 'ale_py'),
                 atari.INSTALL)
pytestmark = pytest.mark.usefixtures('isolated_data')


def _frames(folder):
  return (np.load(folder / 'frames.npy'), np.load(folder / 'episodes.npy'))


def test_64_frames_identical_for_one_seed(tmp_path):
  for run in ('a', 'b'):
    atari.generate(str(tmp_path / run), num_frames=64, seed=7, size=32, progress=False)
  (xa, ea), (xb, eb) = _frames(tmp_path / 'a'), _frames(tmp_path / 'b')
  assert xa.shape == (64, 32, 32, 3) and xa.dtype == np.uint8
  np.testing.assert_array_equal(xa, xb)
  np.testing.assert_array_equal(ea, eb)
  assert xa.std() > 0 and not np.array_equal(xa[0], xa[-1])  # real, moving frames
  atari.generate(str(tmp_path / 'c'), num_frames=64, seed=8, size=32, progress=False)
  assert not np.array_equal(xa, _frames(tmp_path / 'c')[0])


def test_resume_after_interruption_matches(tmp_path, monkeypatch):
  kw = dict(num_frames=25, seed=1, size=16, max_episode_steps=10, progress=False)
  atari.generate(str(tmp_path / 'whole'), **kw)
  calls = []
  real_save = atari._save_progress  # pylint: disable=protected-access

  def crash_on_second(folder, state):
    calls.append(state)
    if len(calls) == 2:
      raise KeyboardInterrupt
    real_save(folder, state)

  monkeypatch.setattr(atari, '_save_progress', crash_on_second)
  with pytest.raises(KeyboardInterrupt):
    atari.generate(str(tmp_path / 'cut'), **kw)
  monkeypatch.setattr(atari, '_save_progress', real_save)
  assert '"next_frame": 10' in (tmp_path / 'cut' / 'progress.json').read_text()
  atari.generate(str(tmp_path / 'cut'), **kw)
  (xw, ew), (xc, ec) = _frames(tmp_path / 'whole'), _frames(tmp_path / 'cut')
  np.testing.assert_array_equal(xw, xc)
  np.testing.assert_array_equal(ew, ec)
  np.testing.assert_array_equal(ew, np.arange(25) // 10)  # episodes kept in order


def test_load_splits_in_time_order(tmp_path):
  parts = {s: data.load('atari-boxing', s, str(tmp_path), image_size=16, seed=3,
                        num_frames=40) for s in data.SPLITS}
  assert [len(parts[s]) for s in data.SPLITS] == [32, 4, 4]
  # 16 px is the 84 px emulator run resized, not a second run.
  frames84, episodes = _frames(tmp_path / 'boxing-seed3-84px-40frames')
  frames, derived_episodes = _frames(tmp_path / 'boxing-seed3-16px-40frames-from84px')
  np.testing.assert_array_equal(derived_episodes, episodes)
  np.testing.assert_array_equal(frames, data.resize_all(frames84, 16))
  assert frames.shape == (40, 16, 16, 3) and frames.std() > 0
  np.testing.assert_array_equal(
      np.concatenate([parts[s].images for s in data.SPLITS]), frames)
  np.testing.assert_array_equal(
      np.concatenate([parts[s].episodes for s in data.SPLITS]), episodes)
  assert parts['train'].image_shape == (16, 16, 3)
  assert parts['train'].class_names == ('boxing',) and not parts['train'].labels.any()
