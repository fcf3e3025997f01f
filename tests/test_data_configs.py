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


@pytest.mark.parametrize('module', MODULES + ('fashion_mnist', 'mnist'))
def test_paper_variant_is_pytorch_vqvae_and_cpu_a_step_budget(module):
  mod = importlib.import_module(f'configs.{module}')
  default, paper, cpu = mod.get_config(), mod.get_config('paper'), mod.get_config('cpu')
  # The default recipe: codebook health on.
  assert (default.codebook, default.restart_after, default.codebook_init) == ('ema', 20, 'data')
  # pytorch-vqvae exactly.
  assert (paper.codebook, paper.codebook_init, paper.restart_after) == ('loss', 'uniform', 0)
  assert (paper.beta, paper.lr, paper.lr_schedule, paper.warmup_steps) == (1.0, 2e-4,
                                                                           'constant', 0)
  assert (paper.hidden_size, paper.k, paper.batch_size) == (256, 512, 128)
  assert paper.grad_clip == 0 and paper.weight_decay == 0
  # The CPU budget: a step count, a smaller model, a decaying schedule after a warm-up.
  assert cpu.max_steps > 0 and cpu.hidden_size == 128 and cpu.lr_schedule == 'cosine'
  assert 0 < cpu.warmup_steps < cpu.max_steps and 5e-4 <= cpu.lr <= 1e-3
  for c in (default, paper, cpu):
    assert c.dataset.replace('-', '_') == module
    with pytest.raises(AttributeError):
      c.lr_shedule = 'cosine'


def test_prior_cpu_variant():
  mod = importlib.import_module('configs.prior')
  cpu = mod.get_config('cpu')
  assert cpu.max_steps > 0 and cpu.lr_schedule == 'cosine' and 0 < cpu.warmup_steps < cpu.max_steps
  assert mod.get_config().lr_schedule == 'constant'
  with pytest.raises(ValueError, match='unknown variant'):
    mod.get_config('gpu')
