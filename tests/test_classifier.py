"""The class-consistency classifier: learns a separable task, measures consistency, caches."""
import json
import os

import jax
import numpy as np
import pytest

from fixtures import write_idx
from vqvae_jax import classifier
from vqvae_jax.cli.config_files import load_config, override
from vqvae_jax.errors import UserError

FAST = classifier.Options(epochs=6, batch_size=32, widths=(8, 16, 16), hidden=32)


def _bars(n, seed):
  """Class c in {0, 1, 2}: a bright horizontal bar in band c of a noisy 28x28 image."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 3, n).astype(np.uint8)
  images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
  for i, c in enumerate(labels):
    images[i, 2 + 9 * c:6 + 9 * c, 3:25] = 220
  return images, labels


def _write(folder, seed=0):
  os.makedirs(folder, exist_ok=True)
  for prefix, n, s in (('train', 330, seed), ('t10k', 60, seed + 1)):
    images, labels = _bars(n, s)
    write_idx(os.path.join(folder, f'{prefix}-images-idx3-ubyte'), images)
    write_idx(os.path.join(folder, f'{prefix}-labels-idx1-ubyte'), labels)
  return _bars(60, seed + 1)


def _config(folder):
  c = load_config('mnist:tiny')
  override(c, 'data_folder', str(folder))
  return c


NAMES = [str(i) for i in range(10)]


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  """Fixture data in a private cache; the first classifier is trained here."""
  path = tmp_path_factory.mktemp('classifier')
  old = os.environ.get('VQVAE_CACHE_DIR')
  os.environ['VQVAE_CACHE_DIR'] = str(path / 'cache')
  test = _write(path / 'd')
  first = classifier.get(_config(path / 'd'), NAMES, FAST)
  yield path, test, first
  if old is None:
    os.environ.pop('VQVAE_CACHE_DIR', None)
  else:
    os.environ['VQVAE_CACHE_DIR'] = old


def test_learns_a_separable_task_and_measures_consistency(root):
  _, (test_images, test_labels), trained = root
  assert trained.trained_now and trained.test_accuracy == 1.0
  x = test_images[..., None]
  # The real images of each class are labelled as their class ...
  assert classifier.consistency(trained, x, test_labels) == 1.0
  assert classifier.per_class(trained, x, test_labels, NAMES) == {'0': 1.0, '1': 1.0, '2': 1.0}
  # ... images drawn for the wrong class are not.
  assert classifier.consistency(trained, x, (test_labels + 1) % 3) == 0.0
  shuffled = np.random.default_rng(5).permutation(test_labels)
  assert classifier.consistency(trained, x, shuffled) < 0.6
  # An untrained network of the same shape is no better than chance here.
  model, params = classifier.train(x, test_labels, 10, classifier.Options(max_steps=0))
  untrained = classifier.Trained(model, params, 0.0, '', True)
  assert classifier.consistency(untrained, x, test_labels) < 0.7


def test_the_classifier_is_cached_and_keyed_by_the_data(root):
  tmp_path, _, first = root
  config = _config(tmp_path / 'd')
  meta = json.load(open(os.path.join(first.folder, 'meta.json')))
  assert meta['test_accuracy'] == first.test_accuracy and meta['n_train'] == 297
  again = classifier.get(config, NAMES, FAST)
  assert not again.trained_now and again.folder == first.folder
  assert again.test_accuracy == first.test_accuracy
  for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(again.params)):
    np.testing.assert_array_equal(a, b)
  parent = os.path.dirname(first.folder)
  assert not [f for f in os.listdir(parent) if f.startswith('.')]  # no temporary folders
  # Other training data (or options) -> another classifier.
  _write(tmp_path / 'e', seed=10)
  other = classifier.get(_config(tmp_path / 'e'), NAMES, FAST)
  assert other.trained_now and other.folder != first.folder
  images, labels = _bars(20, 0)
  key = classifier.cache_key(images, labels, NAMES, FAST)
  assert key != classifier.cache_key(images, labels, NAMES, classifier.Options(epochs=1))
  assert key != classifier.cache_key(images, (labels + 1) % 3, NAMES, FAST)


def test_one_class_and_missing_data_are_clear_errors(root):
  tmp_path = root[0]
  with pytest.raises(UserError, match='does not apply'):
    classifier.get(_config(tmp_path), ['frames'], FAST)
  with pytest.raises(UserError):
    classifier.get(_config(tmp_path / 'nowhere'), NAMES, FAST)
