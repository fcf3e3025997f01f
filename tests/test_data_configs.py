"""The data set configs: loadable, locked, consistent with vqvae_jax.data."""
import importlib

import pytest

from vqvae_jax import data

MODULES = ('cifar10', 'miniimagenet', 'atari_boxing', 'folder')


@pytest.mark.parametrize('module', MODULES)
@pytest.mark.parametrize('variant', [None, 'tiny'])
def test_config_is_locked_and_names_a_dataset(module, variant):
  c = importlib.import_module(f'configs.{module}').get_config(variant)
  assert data.canonical_name(c.dataset) == c.dataset
  assert c.dataset.replace('-', '_') == module
  assert c.image_size % 4 == 0 and c.channels in (1, 3)
  with pytest.raises(AttributeError):
    c.imgae_size = 3  # a typo must raise, not add a key


def test_miniimagenet_128_variant_and_unknown_variant():
  mod = importlib.import_module('configs.miniimagenet')
  assert mod.get_config('128').image_size == 128
  assert mod.get_config().image_size == 84
  with pytest.raises(ValueError, match='unknown variant'):
    mod.get_config('huge')
