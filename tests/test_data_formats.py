"""CIFAR-10 pickles, Mini-ImageNet CSVs, class folders, tfds, and the cache."""
import os
import pickle
import tarfile

import fixtures
import numpy as np
import pytest
from fixtures import isolated_data  # pylint: disable=unused-import

from vqvae_jax import data
from vqvae_jax.data import images as images_lib
from vqvae_jax.errors import UserError

pytestmark = pytest.mark.usefixtures('isolated_data')


# CIFAR-10 ---------------------------------------------------------------------

def test_cifar_round_trip_exact_and_splits(tmp_path):
  written = fixtures.write_cifar_folder(str(tmp_path / 'c'), n_per_batch=10)
  train = data.load('cifar10', 'train', str(tmp_path / 'c'))
  valid = data.load('cifar-10', 'valid', str(tmp_path / 'c'))
  test = data.load('cifar10', 'test', str(tmp_path / 'c' / 'cifar-10-batches-py'))
  x, y = written['train']
  assert (len(train), len(valid), len(test)) == (45, 5, 10)
  np.testing.assert_array_equal(np.concatenate([train.images, valid.images]), x)
  np.testing.assert_array_equal(np.concatenate([train.labels, valid.labels]), y)
  np.testing.assert_array_equal(test.images, written['test'][0])
  assert train.image_shape == (32, 32, 3)
  assert train.class_names == tuple(sorted(train.class_names))
  assert train.class_names[0] == 'airplane' and len(train.class_names) == 10


def test_cifar_from_archive(tmp_path):
  written = fixtures.write_cifar_folder(str(tmp_path / 'src'), n_per_batch=4)
  with tarfile.open(tmp_path / 'cifar-10-python.tar.gz', 'w:gz') as tar:
    tar.add(tmp_path / 'src' / 'cifar-10-batches-py', 'cifar-10-batches-py')
  test = data.load('cifar10', 'test', str(tmp_path))
  np.testing.assert_array_equal(test.images, written['test'][0])


class _Evil:
  def __reduce__(self):
    return (os.system, ('echo pwned > pwned.txt',))


@pytest.mark.parametrize('payload', [
    {b'data': _Evil(), b'labels': []},
    {b'data': np.zeros((1, 3072), np.uint8), b'labels': [eval]},
])
def test_malicious_pickle_refused(tmp_path, payload, monkeypatch):
  monkeypatch.chdir(tmp_path)
  fixtures.write_cifar_folder(str(tmp_path), n_per_batch=2)
  path = tmp_path / 'cifar-10-batches-py' / 'data_batch_3'
  path.write_bytes(pickle.dumps(payload, protocol=2))
  with pytest.raises(UserError, match=r'data_batch_3.*refusing.*(system|eval)'):
    data.load('cifar10', 'train', str(tmp_path))
  assert not (tmp_path / 'pwned.txt').exists()


def test_cifar_truncated_and_partial(tmp_path):
  fixtures.write_cifar_folder(str(tmp_path), n_per_batch=2)
  path = tmp_path / 'cifar-10-batches-py' / 'test_batch'
  path.write_bytes(path.read_bytes()[:300])
  with pytest.raises(UserError, match='test_batch.*corrupt or truncated'):
    data.load('cifar10', 'test', str(tmp_path))
  os.remove(path)
  with pytest.raises(UserError, match='missing: test_batch'):
    data.load('cifar10', 'test', str(tmp_path))


def test_cifar_missing_says_how_to_get_it(tmp_path):
  (tmp_path / 'nothing').mkdir()
  with pytest.raises(UserError, match='cifar-10-batches-py.*data_batch_1.*toronto'):
    data.load('cifar10', 'train', str(tmp_path / 'nothing'))


# Cache ------------------------------------------------------------------------

def test_second_load_is_memory_mapped_and_source_changes_rebuild(tmp_path):
  fixtures.write_mnist_folder(str(tmp_path / 'm'), seed=0)
  first = data.load('mnist', 'test', str(tmp_path / 'm'))
  second = data.load('mnist', 'test', str(tmp_path / 'm'))
  assert isinstance(second.images.base, np.memmap) or isinstance(second.images, np.memmap)
  np.testing.assert_array_equal(first.images, second.images)
  written = fixtures.write_mnist_folder(str(tmp_path / 'm'), n_test=31, seed=1)
  third = data.load('mnist', 'test', str(tmp_path / 'm'))
  np.testing.assert_array_equal(third.images[..., 0], written['test'][0])


# Mini-ImageNet ----------------------------------------------------------------

def _write_miniimagenet(root, sizes=(84, 84), ext='png'):
  rng = np.random.default_rng(0)
  truth = {}
  for csv_name, classes in (('train.csv', ('n02', 'n01')), ('val.csv', ('n05',)),
                            ('test.csv', ('n09', 'n07'))):
    rows, arrays = ['filename,label'], []
    for i in range(6):
      label = classes[i % len(classes)]
      name = f'{label}{csv_name[:2]}{i:04d}.{ext}'
      x = rng.integers(0, 256, sizes + (3,), dtype=np.uint8)
      fixtures.write_image(os.path.join(root, 'images', name), x)
      rows.append(f'{name},{label}')
      arrays.append((x, label))
    (root / csv_name).write_text('\n'.join(rows) + '\n')
    truth[csv_name] = arrays
  return truth


def test_miniimagenet_png_round_trip_and_sorted_ids(tmp_path):
  truth = _write_miniimagenet(tmp_path)
  train = data.load('miniimagenet', 'train', str(tmp_path))
  assert train.image_shape == (84, 84, 3) and len(train) == 6
  assert train.class_names == ('n01', 'n02')  # sorted, not in CSV order
  for i, (x, label) in enumerate(truth['train.csv']):
    np.testing.assert_array_equal(train.images[i], x)
    assert train.class_names[train.labels[i]] == label
  valid = data.load('miniimagenet', 'valid', str(tmp_path))
  assert valid.class_names == ('n05',) and len(valid) == 6


def test_miniimagenet_jpeg_resize_and_center_crop(tmp_path):
  _write_miniimagenet(tmp_path, sizes=(100, 140), ext='jpg')
  test = data.load('miniimagenet', 'test', str(tmp_path), image_size=50)
  assert test.images.shape == (6, 50, 50, 3)
  name = (tmp_path / 'test.csv').read_text().splitlines()[1].split(',')[0]
  expect = images_lib.resize_center_crop(
      images_lib.decode(str(tmp_path / 'images' / name), 3), 50)
  np.testing.assert_array_equal(test.images[0], expect)


def test_miniimagenet_missing_image_and_csv(tmp_path):
  _write_miniimagenet(tmp_path)
  name = (tmp_path / 'val.csv').read_text().splitlines()[2].split(',')[0]
  os.remove(tmp_path / 'images' / name)
  with pytest.raises(UserError, match=f'1 image.*val.csv.*{name}'):
    data.load('miniimagenet', 'valid', str(tmp_path))
  os.remove(tmp_path / 'test.csv')
  with pytest.raises(UserError, match='test.csv.*filename,label'):
    data.load('miniimagenet', 'test', str(tmp_path))


def test_resize_center_crop_keeps_the_centre():
  x = np.zeros((40, 80, 1), np.uint8)
  x[:, 20:60] = 255  # the centre square is white, the sides black
  out = images_lib.resize_center_crop(x, 20)
  assert out.shape == (20, 20, 1)
  assert out[:, 1:-1].min() == 255 and out.min() > 200  # bicubic: soft edge only


def test_random_resized_crop_deterministic_and_varied():
  x = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
  a = data.random_resized_crop(x, np.random.default_rng([1, 2, 3]))
  b = data.random_resized_crop(x, np.random.default_rng([1, 2, 3]))
  c = data.random_resized_crop(x, np.random.default_rng([1, 2, 4]))
  assert a.shape == x.shape and a.dtype == np.uint8
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c) and not np.array_equal(a, x)
  full = data.random_resized_crop(x, np.random.default_rng(0), scale=(1, 1),
                                  ratio=(1, 1), flip=False)
  np.testing.assert_array_equal(full, x)  # a full-size crop is the identity
  np.testing.assert_array_equal(data.augment(x, seed=1, epoch=2, step=3),
                                data.augment(x, seed=1, epoch=2, step=3))
  assert not np.array_equal(data.augment(x, seed=1, epoch=2, step=3),
                            data.augment(x, seed=1, epoch=2, step=4))
  # an image's augmentation depends on its place in the global batch, not on
  # how many processes share the batch
  halves = [data.augment(x[:2], seed=1, epoch=2, step=3),
            data.augment(x[2:], seed=1, epoch=2, step=3, first_index=2)]
  np.testing.assert_array_equal(np.concatenate(halves), data.augment(x, seed=1, epoch=2, step=3))


# Class folders ----------------------------------------------------------------

def _write_folder(root, classes=('zebra', 'ant', 'cat'), n=12, channels=3):
  rng = np.random.default_rng(0)
  truth = {}
  for cls in classes:
    for i in range(n):
      x = rng.integers(0, 256, (8, 8, channels), dtype=np.uint8)
      path = fixtures.write_image(str(root / cls / f'{i:03d}.png'), x)
      truth[path] = (x, cls)
  return truth


def test_folder_round_trip_hash_splits_and_sorted_ids(tmp_path):
  truth = _write_folder(tmp_path / 'f')
  parts = {s: data.load('folder', s, str(tmp_path / 'f')) for s in data.SPLITS}
  assert sum(len(p) for p in parts.values()) == len(truth)
  assert all(len(p) for p in parts.values())
  ds = parts['train']
  assert ds.class_names == ('ant', 'cat', 'zebra')
  expected = {(x.tobytes(), cls) for x, cls in truth.values()}
  got = {(p.images[i].tobytes(), p.class_names[p.labels[i]])
         for p in parts.values() for i in range(len(p))}
  assert got == expected  # every image once, exact pixels, right class
  for path, (x, cls) in truth.items():
    split = data.SPLITS[data.folder.hash_split(os.path.relpath(path, tmp_path / 'f' / cls))]
    assert (x.tobytes(), cls) in {(parts[split].images[i].tobytes(),
                                   ds.class_names[parts[split].labels[i]])
                                  for i in range(len(parts[split]))}


def test_folder_explicit_splits_and_grey_channels(tmp_path):
  for split, n in (('train', 5), ('val', 2), ('test', 3)):
    _write_folder(tmp_path / 'f' / split, classes=('b', 'a'), n=n, channels=1)
  valid = data.load('folder', 'valid', str(tmp_path / 'f'))
  assert len(valid) == 4 and valid.image_shape == (8, 8, 1)
  assert valid.class_names == ('a', 'b')
  rgb = data.load('folder', 'test', str(tmp_path / 'f'), channels=3)
  assert rgb.image_shape == (8, 8, 3)
  np.testing.assert_array_equal(rgb.images[..., 0], rgb.images[..., 2])


def test_folder_corrupt_image_named_or_skipped(tmp_path):
  truth = _write_folder(tmp_path / 'f', n=5)
  bad = tmp_path / 'f' / 'cat' / '002.png'
  bad.write_bytes(b'\x89PNG\r\n\x1a\n' + b'garbage')
  with pytest.raises(UserError, match='cat/002.png'):
    data.load('folder', 'train', str(tmp_path / 'f'))
  total = sum(len(data.load('folder', s, str(tmp_path / 'f'), skip_corrupt=True))
              for s in data.SPLITS)
  assert total == len(truth) - 1


def test_folder_sizes_and_missing(tmp_path):
  fixtures.write_image(str(tmp_path / 'f' / 'a' / 'x.png'), np.zeros((8, 8, 3), np.uint8))
  fixtures.write_image(str(tmp_path / 'f' / 'a' / 'y.png'), np.zeros((9, 8, 3), np.uint8))
  with pytest.raises(UserError, match='different sizes.*image_size'):
    data.load('folder', 'train', str(tmp_path / 'f'))
  with pytest.raises(UserError, match='one sub-folder of images per class'):
    data.load('folder', 'train', str(tmp_path / 'nope'))
  with pytest.raises(UserError, match='16-bit'):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / 'deep.png')
    images_lib.decode(str(tmp_path / 'deep.png'))


# tensorflow-datasets ----------------------------------------------------------

def test_tfds_mock_path(tmp_path):
  tfds = pytest.importorskip('tensorflow_datasets')
  (tmp_path / 'empty').mkdir()
  with tfds.testing.mock_data(num_examples=20):
    train = data.load('fashion-mnist', 'train', str(tmp_path / 'empty'))
    test = data.load('fashion-mnist', 'test')
    source = tfds.data_source('fashion_mnist', split='train')
    expect = np.stack([source[i]['image'] for i in range(18)])
    labels = np.array([source[i]['label'] for i in range(18)])
  assert (len(train), len(test)) == (18, 20)
  assert train.image_shape == (28, 28, 1)
  np.testing.assert_array_equal(train.images, expect)
  np.testing.assert_array_equal(train.labels, labels)
  # decoded once: the second load is the memory-mapped cache
  assert isinstance(train.images, np.memmap) or isinstance(train.images.base, np.memmap)
  cached = [d for d in os.listdir(data.cache.root()) if d.startswith('fashion-mnist-train-tfds-')]
  assert len(cached) == 1


def test_progress_and_warnings_only_from_the_main_process(tmp_path, monkeypatch, caplog, capsys):
  """Multi-host: process 0 alone shows data progress bars and warnings."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from vqvae_jax import distributed  # pylint: disable=g-import-not-at-top
  assert distributed.is_main_process()  # no multi-host run initialised here
  paths = []
  for i in range(2000):  # the progress bar shows from 2000 files
    paths.append(str(tmp_path / f'{i}.png'))
    Image.fromarray(np.full((4, 4), i % 256, np.uint8)).save(paths[-1])
  (tmp_path / 'bad.png').write_bytes(b'junk')
  paths.append(str(tmp_path / 'bad.png'))
  for main in (True, False):
    monkeypatch.setattr(images_lib, 'is_main_process', lambda m=main: m)
    caplog.clear()
    out, kept = images_lib.decode_many(paths, 4, 1, skip_corrupt=True)
    assert out.shape == (2000, 4, 4, 1) and len(kept) == 2000
    err = capsys.readouterr().err
    assert ('decoding' in err) == main
    assert any('skipped 1 unreadable' in r.getMessage() for r in caplog.records) == main
