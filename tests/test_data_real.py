"""The real Fashion-MNIST from /usr/share/datasets (Debian dataset-fashion-mnist).

Skipped when it is not installed, unless VQVAE_REQUIRE_DATA=1 (set by .ci/run),
which turns the missing data set into a failure.
"""
import os

import fixtures
import numpy as np

from vqvae_jax import data

FOLDER = os.path.join(data.SYSTEM_DIR, 'fashion-mnist')


def test_real_fashion_mnist(tmp_path, monkeypatch):
  fixtures.require('Fashion-MNIST', data.idx.find(FOLDER) is not None,
                   f'{FOLDER}: apt-get install dataset-fashion-mnist')
  monkeypatch.setenv('VQVAE_CACHE_DIR', str(tmp_path))
  train, valid, test = (data.load('fashion-mnist', s) for s in data.SPLITS)
  assert (len(train), len(valid), len(test)) == (55000, 5000, 10000)
  for ds in (train, valid, test):
    assert ds.image_shape == (28, 28, 1) and ds.images.dtype == np.uint8
  # The published mean 0.2860 is over the whole training FILE: all 60,000
  # images, i.e. our train (55,000) and valid (5,000) splits together.
  total = train.images.sum(dtype=np.int64) + valid.images.sum(dtype=np.int64)
  mean = total / (60000 * 28 * 28) / 255.0
  assert abs(mean - 0.2860) <= 0.0005, mean
  assert np.bincount(test.labels).tolist() == [1000] * 10  # balanced test set
  assert np.bincount(np.concatenate([train.labels, valid.labels])).tolist() == [6000] * 10
