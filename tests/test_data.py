"""data.load for MNIST-like IDX files: exact round trips, splits, bad input."""
import gzip
import os

import fixtures
import numpy as np
import pytest
from fixtures import isolated_data  # pylint: disable=unused-import

from vqvae_jax import data
from vqvae_jax.errors import UserError

pytestmark = pytest.mark.usefixtures('isolated_data')


@pytest.mark.parametrize('gz', [True, False])
def test_idx_round_trip_exact(tmp_path, gz):
  written = fixtures.write_mnist_folder(str(tmp_path), n_train=120, n_test=30, gz=gz)
  train = data.load('mnist', 'train', str(tmp_path))
  valid = data.load('mnist', 'valid', str(tmp_path))
  test = data.load('mnist', 'test', str(tmp_path))
  x, y = written['train']
  # valid = the last N // 10 of the training file, train = the rest.
  assert (len(train), len(valid), len(test)) == (108, 12, 30)
  np.testing.assert_array_equal(train.images[..., 0], x[:108])
  np.testing.assert_array_equal(valid.images[..., 0], x[108:])
  np.testing.assert_array_equal(train.labels, y[:108])
  np.testing.assert_array_equal(valid.labels, y[108:])
  np.testing.assert_array_equal(test.images[..., 0], written['test'][0])
  np.testing.assert_array_equal(test.labels, written['test'][1])
  assert train.images.dtype == np.uint8 and train.labels.dtype == np.int32
  assert train.image_shape == (28, 28, 1)
  assert train.class_names == tuple('0123456789')


def test_valid_holdout_is_capped_at_5000():
  assert data.dataset.num_valid(60000) == 5000
  assert data.dataset.num_valid(50000) == 5000
  assert data.dataset.num_valid(120) == 12


def test_fashion_class_names_and_name_aliases(tmp_path):
  fixtures.write_mnist_folder(str(tmp_path))
  ds = data.load('Fashion_MNIST', 'test', str(tmp_path))
  assert ds.name == 'fashion-mnist'
  assert ds.class_names[0] == 'T-shirt/top' and ds.class_names[9] == 'Ankle boot'
  assert len(ds.class_names) == 10


def test_dotted_file_names_accepted(tmp_path):
  written = fixtures.write_mnist_folder(str(tmp_path), gz=False)
  for f in os.listdir(tmp_path):
    os.rename(tmp_path / f, tmp_path / f.replace('-idx', '.idx'))
  ds = data.load('mnist', 'test', str(tmp_path))
  np.testing.assert_array_equal(ds.labels, written['test'][1])


def test_system_dir_fallback(tmp_path):
  fixtures.write_mnist_folder(str(tmp_path / 'system' / 'mnist'))
  (tmp_path / 'empty').mkdir()
  assert len(data.load('mnist', 'test', str(tmp_path / 'empty'))) == 30
  assert len(data.load('mnist', 'test', '')) == 30  # '' = default locations


def test_nonexistent_data_folder_is_an_error(tmp_path):
  fixtures.write_mnist_folder(str(tmp_path / 'system' / 'mnist'))
  with pytest.raises(UserError, match='typo does not exist.*train-images-idx3-ubyte'):
    data.load('mnist', 'test', str(tmp_path / 'typo'))


def test_image_size_resizes(tmp_path):
  fixtures.write_mnist_folder(str(tmp_path))
  ds = data.load('mnist', 'test', str(tmp_path), image_size=32)
  assert ds.images.shape == (30, 32, 32, 1) and ds.images.dtype == np.uint8


def test_missing_files_error_lists_expected(tmp_path):
  with pytest.raises(UserError) as e:
    data.load('mnist', 'train', str(tmp_path))
  for name in ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
               't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'):
    assert name in str(e.value)
  assert str(tmp_path) in str(e.value)


def test_partial_files_error_names_missing(tmp_path):
  fixtures.write_mnist_folder(str(tmp_path))
  os.remove(tmp_path / 't10k-labels-idx1-ubyte.gz')
  with pytest.raises(UserError, match='t10k-labels-idx1-ubyte'):
    data.load('mnist', 'train', str(tmp_path))


def test_truncated_idx_named(tmp_path):
  fixtures.write_mnist_folder(str(tmp_path), gz=False)
  path = tmp_path / 'train-images-idx3-ubyte'
  path.write_bytes(path.read_bytes()[:-100])
  with pytest.raises(UserError, match='train-images-idx3-ubyte.*truncated'):
    data.load('mnist', 'train', str(tmp_path))


def test_corrupt_gzip_named(tmp_path):
  fixtures.write_mnist_folder(str(tmp_path))
  path = tmp_path / 't10k-images-idx3-ubyte.gz'
  path.write_bytes(path.read_bytes()[:200])
  with pytest.raises(UserError, match='t10k-images-idx3-ubyte.gz'):
    data.load('mnist', 'test', str(tmp_path))


def test_bad_magic_and_count_mismatch(tmp_path):
  fixtures.write_mnist_folder(str(tmp_path), gz=False)
  (tmp_path / 't10k-labels-idx1-ubyte').write_bytes(b'PK\x03\x04' + bytes(40))
  with pytest.raises(UserError, match='t10k-labels-idx1-ubyte.*magic'):
    data.load('mnist', 'test', str(tmp_path))
  fixtures.write_idx(str(tmp_path / 't10k-labels-idx1-ubyte'), np.zeros(29, np.uint8))
  with pytest.raises(UserError, match='30 images.*29 labels'):
    data.load('mnist', 'test', str(tmp_path))


def test_unknown_name_and_split():
  with pytest.raises(UserError, match='unknown data set'):
    data.load('imagenet', 'train')
  with pytest.raises(UserError, match='unknown split'):
    data.load('mnist', 'validation')
  assert set(data.NAMES) >= {'mnist', 'fashion-mnist', 'cifar10', 'miniimagenet',
                             'atari-boxing', 'folder'}
