"""The real Fashion-MNIST from /usr/share/datasets (Debian dataset-fashion-mnist).

Skipped when it is not installed, unless VQVAE_REQUIRE_DATA=1 (set by .ci/run),
which turns the missing data set into a failure.
"""
import os

import numpy as np
import pytest

from vqvae_jax import data

FOLDER = os.path.join(data.SYSTEM_DIR, 'fashion-mnist')


def _require():
  if data.idx.find(FOLDER) is None:
    if os.environ.get('VQVAE_REQUIRE_DATA') == '1':
      pytest.fail(f'VQVAE_REQUIRE_DATA=1 but Fashion-MNIST is missing from {FOLDER} '
                  '(apt install dataset-fashion-mnist)')
    pytest.skip(f'Fashion-MNIST not installed in {FOLDER}')


def test_real_fashion_mnist():
  _require()
  train = data.load('fashion-mnist', 'train', FOLDER)
  valid = data.load('fashion-mnist', 'valid', FOLDER)
  test = data.load('fashion-mnist', 'test', FOLDER)
  assert (len(train), len(valid), len(test)) == (55000, 5000, 10000)
  for ds in (train, valid, test):
    assert ds.image_shape == (28, 28, 1)
  # The published 0.2860 is the mean over the full training FILE: all 60,000
  # images, i.e. our train (55,000) + valid (5,000) splits together.
  total = (train.images.sum(dtype=np.int64) + valid.images.sum(dtype=np.int64))
  mean = total / (60000 * 28 * 28) / 255.0
  assert abs(mean - 0.2860) <= 0.0005, mean
  assert np.bincount(test.labels).tolist() == [1000] * 10  # balanced test set
