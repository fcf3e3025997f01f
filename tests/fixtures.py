"""Writers for data set fixtures in the real on-disk formats (used by tests)."""
from __future__ import annotations

import gzip
import os

import numpy as np
import pytest


def idx_bytes(array: np.ndarray) -> bytes:
  """uint8 array -> IDX bytes: magic 00 00 08 <ndim>, big-endian sizes, data."""
  array = np.ascontiguousarray(array, np.uint8)
  header = bytes([0, 0, 0x08, array.ndim])
  header += np.asarray(array.shape, '>i4').tobytes()
  return header + array.tobytes()


def write_idx(path: str, array: np.ndarray) -> str:
  """Writes `array` as IDX; gzipped when `path` ends in '.gz'."""
  data = idx_bytes(array)
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'wb') as f:
    f.write(data)
  return path


def random_mnist(rng: np.random.Generator, n: int, size: int = 28):
  """images [n, size, size] uint8, labels [n] uint8 in 0..9."""
  images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
  labels = rng.integers(0, 10, n, dtype=np.uint8)
  return images, labels


def write_mnist_folder(folder: str, *, n_train: int = 120, n_test: int = 30,
                       gz: bool = True, seed: int = 0) -> dict:
  """Writes the four IDX files; returns {'train': (x, y), 'test': (x, y)}."""
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  ext = '.gz' if gz else ''
  out = {}
  for split, prefix, n in (('train', 'train', n_train), ('test', 't10k', n_test)):
    images, labels = random_mnist(rng, n)
    write_idx(os.path.join(folder, f'{prefix}-images-idx3-ubyte{ext}'), images)
    write_idx(os.path.join(folder, f'{prefix}-labels-idx1-ubyte{ext}'), labels)
    out[split] = (images, labels)
  return out


def require(what: str, available: bool, how: str) -> None:
  """Skips the calling test (or module) when a data source is missing.

  With VQVAE_REQUIRE_DATA=1 (as .ci/run sets) the missing source is a
  failure instead, so CI cannot go green by skipping the real-data checks.
  """
  if available:
    return
  message = f'{what} is not available ({how})'
  if os.environ.get('VQVAE_REQUIRE_DATA') == '1':
    pytest.fail(f'VQVAE_REQUIRE_DATA=1 but {message}', pytrace=False)
  pytest.skip(message, allow_module_level=True)


def has_modules(*names: str) -> bool:
  import importlib.util  # pylint: disable=g-import-not-at-top
  return all(importlib.util.find_spec(n) is not None for n in names)


@pytest.fixture
def isolated_data(tmp_path, monkeypatch):
  """A private cache and an empty system folder: tests see only their fixtures.

  Use with `from fixtures import isolated_data` and
  `pytestmark = pytest.mark.usefixtures('isolated_data')`.
  """
  from vqvae_jax import data  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv('VQVAE_CACHE_DIR', str(tmp_path / 'cache'))
  monkeypatch.setattr(data, 'SYSTEM_DIR', str(tmp_path / 'system'))
  return tmp_path


def cifar_batch_bytes(images: np.ndarray, labels: np.ndarray,
                      legacy_numpy: bool = True) -> bytes:
  """A CIFAR-10 batch pickle: {b'data': [n, 3072] (planes R, G, B), ...}.

  `legacy_numpy` names numpy.core.multiarray as the original (Python 2) files
  do; otherwise numpy 2's own numpy._core.
  """
  import pickle  # pylint: disable=g-import-not-at-top
  batch = {
      b'batch_label': b'training batch 1 of 5',
      b'labels': [int(y) for y in labels],
      b'data': images.transpose(0, 3, 1, 2).reshape(len(images), 3072).copy(),
      b'filenames': [b'img_%d.png' % i for i in range(len(images))],
  }
  raw = pickle.dumps(batch, protocol=2)
  if legacy_numpy:
    raw = raw.replace(b'numpy._core.multiarray', b'numpy.core.multiarray')
  return raw


def write_cifar_folder(folder: str, n_per_batch: int = 10, seed: int = 0) -> dict:
  """Writes cifar-10-batches-py/ under `folder`; returns {'train', 'test'}."""
  import pickle  # pylint: disable=g-import-not-at-top
  sub = os.path.join(folder, 'cifar-10-batches-py')
  os.makedirs(sub, exist_ok=True)
  rng = np.random.default_rng(seed)
  parts = {'train': [], 'test': []}
  names = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
  for i, name in enumerate(names):
    x = rng.integers(0, 256, (n_per_batch, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n_per_batch)
    with open(os.path.join(sub, name), 'wb') as f:
      f.write(cifar_batch_bytes(x, y, legacy_numpy=i % 2 == 0))
    parts['test' if name == 'test_batch' else 'train'].append((x, y))
  with open(os.path.join(sub, 'batches.meta'), 'wb') as f:
    pickle.dump({b'label_names': [b'airplane'], b'num_vis': 3072}, f, protocol=2)
  return {k: (np.concatenate([p[0] for p in v]), np.concatenate([p[1] for p in v]))
          for k, v in parts.items()}


def write_image(path: str, array: np.ndarray) -> str:
  """[H, W, 1|3] uint8 -> an image file whose format follows the extension."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)
  return path


def folder_snapshot(folder: str) -> dict:
  """{path relative to `folder`: file bytes, or None for a folder}: compare two
  snapshots to prove nothing in `folder` was written, created or removed."""
  out = {}
  for root, dirs, files in os.walk(folder):
    for d in dirs:
      out[os.path.relpath(os.path.join(root, d), folder)] = None
    for f in files:
      path = os.path.join(root, f)
      with open(path, 'rb') as fh:
        out[os.path.relpath(path, folder)] = fh.read()
  return out


def train_tiny_stages(root):
  """Trains mnist:tiny (1 epoch on a fixture in root/mnist) into root/vq and
  prior:tiny on its codes into root/prior -> (VQ-VAE config, prior summary)."""
  from vqvae_jax.train import prior as prior_training, vqvae as vqvae_training  # pylint: disable=g-import-not-at-top
  from vqvae_jax.cli.config_files import load_config, override  # pylint: disable=g-import-not-at-top
  write_mnist_folder(str(root / 'mnist'), n_train=100, n_test=20)  # valid 10, train 90
  vq = load_config('mnist:tiny')
  override(vq, 'data_folder', str(root / 'mnist'))
  override(vq, 'num_epochs', 1)
  vqvae_training.train_vqvae(vq, str(root / 'vq'))
  pc = load_config('prior:tiny')
  override(pc, 'model', str(root / 'vq'))
  return vq, prior_training.train_prior(pc, str(root / 'prior'))
