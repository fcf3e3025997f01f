"""Atari 2600 Boxing frames under a uniformly random policy (gymnasium + ale-py).

Frames are the agent's observations of `ALE/Boxing-v5` (frame skip 4, sticky
actions 0.25: the v5 defaults), 210x160 RGB resized to size x size (bicubic,
whole frame, no crop). Episode e is reset with seed (seed, e) and its actions
drawn from `default_rng([seed, e])`, so the frames are a pure function of the
seed and generation can resume at any episode boundary: progress is saved
after every episode. The last episode is cut at `num_frames`.

Smaller sizes are not played again: they are the 84 px frames resized
(bicubic, `images.resize_all`), made once and cached beside them, so every
size of one seed shows the same frames and only one emulator run is needed.

Splits are in time order: train = first 80%, valid = next 10%, test = last 10%.
"""
from __future__ import annotations

import json
import os

import numpy as np
import tqdm
from PIL import Image

from vqvae_jax.data import cache
from vqvae_jax.data.images import resize_all
from vqvae_jax.distributed import is_main_process
from vqvae_jax.errors import UserError
from vqvae_jax.fileio import save_npy

ENV_ID = 'ALE/Boxing-v5'
DEFAULT_FRAMES = 60000
DEFAULT_SIZE = 84
INSTALL = 'pip install gymnasium==1.4.0 ale-py==0.12.1'  # wheels ship the ROMs


def _make_env():
  try:
    import ale_py  # pylint: disable=g-import-not-at-top
    import gymnasium as gym  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError(f'atari-boxing needs gymnasium and ale-py: {INSTALL}') from e
  gym.register_envs(ale_py)
  return gym.make(ENV_ID, frameskip=4, repeat_action_probability=0.25,
                  full_action_space=False)


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
  return np.asarray(Image.fromarray(frame).resize((size, size),
                                                  Image.Resampling.BICUBIC))


def split_range(n: int, split: str) -> tuple[int, int]:
  """[lo, hi) of `split` among n frames: 80/10/10 in time order."""
  a, b = int(n * 0.8), int(n * 0.9)
  return {'train': (0, a), 'valid': (a, b), 'test': (b, n)}[split]


def _save_progress(folder: str, state: dict) -> None:
  tmp = os.path.join(folder, 'progress.json.tmp')
  with open(tmp, 'w') as f:
    json.dump(state, f)
  os.replace(tmp, os.path.join(folder, 'progress.json'))


def _play_episode(env, seed, episode, frames, episodes, start, max_steps, bar):
  """Writes one episode's frames from `start`; returns the next free index."""
  rng = np.random.default_rng([seed, episode])
  obs, _ = env.reset(seed=int(np.random.SeedSequence([seed, episode]).generate_state(1)[0]))
  i, steps, done = start, 0, False
  size = frames.shape[1]
  while i < len(frames):
    frames[i], episodes[i] = _resize(obs, size), episode
    i, steps = i + 1, steps + 1
    bar.update(1)
    if done or (max_steps and steps >= max_steps):
      break
    obs, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
    done = terminated or truncated
  return i


def generate(folder: str, *, num_frames: int = DEFAULT_FRAMES, seed: int = 0,
             size: int = DEFAULT_SIZE, max_episode_steps: int | None = None,
             progress: bool = True) -> str:
  """Generates (or finishes generating) the frames in `folder`.

  Returns:
    `folder`, holding frames.npy [num_frames, size, size, 3] uint8 and
    episodes.npy [num_frames] int32 (episode id of each frame).
  """
  if num_frames < 10:
    raise UserError(f'atari-boxing needs at least 10 frames, got {num_frames}')
  os.makedirs(folder, exist_ok=True)
  state_path = os.path.join(folder, 'progress.json')
  state = {'next_frame': 0, 'next_episode': 0}
  if os.path.isfile(state_path):
    with open(state_path) as f:
      state = json.load(f)
  if state['next_frame'] >= num_frames:
    return folder
  mode = 'r+' if state['next_frame'] else 'w+'
  open_memmap = np.lib.format.open_memmap
  frames = open_memmap(os.path.join(folder, 'frames.npy'), mode, np.uint8,
                       (num_frames, size, size, 3))
  episodes = open_memmap(os.path.join(folder, 'episodes.npy'), mode, np.int32,
                         (num_frames,))
  env = _make_env()
  with tqdm.tqdm(total=num_frames, initial=state['next_frame'], unit='frame',
                 desc='atari-boxing', disable=not progress or not is_main_process(),
                 mininterval=2.0) as bar:
    while state['next_frame'] < num_frames:
      nxt = _play_episode(env, seed, state['next_episode'], frames, episodes,
                          state['next_frame'], max_episode_steps, bar)
      frames.flush()
      episodes.flush()
      state = {'next_frame': nxt, 'next_episode': state['next_episode'] + 1}
      _save_progress(folder, state)
  env.close()
  return folder


def _folder(base: str, seed: int, size: int, n: int) -> str:
  return os.path.join(base, f'boxing-seed{seed}-{size}px-{n}frames')


def derive(source: str, folder: str, size: int) -> str:
  """The frames of a `generate`d folder resized to size x size, in `folder`
  (made once: frames.npy is written last, atomically)."""
  frames_path = os.path.join(folder, 'frames.npy')
  if not os.path.isfile(frames_path):
    os.makedirs(folder, exist_ok=True)
    save_npy(os.path.join(folder, 'episodes.npy'),
              np.load(os.path.join(source, 'episodes.npy')))
    save_npy(frames_path, resize_all(np.load(os.path.join(source, 'frames.npy'),
                                              mmap_mode='r'), size))
  return folder


def load(split: str, folder: str | None, *, image_size: int | None = None,
         seed: int = 0, num_frames: int | None = None):
  """Returns images [N, S, S, 3] uint8, labels [N] (zeros), class names, episodes."""
  size, n = image_size or DEFAULT_SIZE, num_frames or DEFAULT_FRAMES
  base = folder or os.path.join(cache.root(), 'atari-boxing')
  big = max(size, DEFAULT_SIZE)
  out = generate(_folder(base, seed, big, n), num_frames=n, seed=seed, size=big)
  if size < big:
    out = derive(out, _folder(base, seed, size, n) + f'-from{big}px', size)
  frames = np.load(os.path.join(out, 'frames.npy'), mmap_mode='r')
  episodes = np.load(os.path.join(out, 'episodes.npy'), mmap_mode='r')
  lo, hi = split_range(n, split)
  return (frames[lo:hi], np.zeros(hi - lo, np.int32), ('boxing',),
          np.asarray(episodes[lo:hi]))
