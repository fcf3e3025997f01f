"""Entropy-coded files decode bit-exactly under other runtime configurations.

A trained (tiny) VQ-VAE + prior compresses images in this process; fresh
processes with other XLA threading, one CPU core, stock malloc or more host
devices decompress them, and every one must rebuild exactly the same codes.
"""
import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fixtures import train_tiny_stages
from vqvae_jax import __main__ as cli, runs
from vqvae_jax.codec import compression, integer_prior

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def coded(tmp_path_factory):
  """(root, prior folder, {stem: codes}) for 12 compressed test images."""
  root = tmp_path_factory.mktemp('portable')
  cache = str(root / 'cache')
  old = os.environ.get('VQVAE_CACHE_DIR')
  os.environ['VQVAE_CACHE_DIR'] = cache
  try:
    vq, _ = train_tiny_stages(root)
    images = runs.load_split(vq, 'test').images[:12]
    os.makedirs(root / 'in')
    for i, image in enumerate(images):
      Image.fromarray(image[..., 0]).save(root / 'in' / f'im{i:02d}.png')
    cli.main(['compress', str(root / 'in'), '--prior', str(root / 'prior'),
              '-o', str(root / 'vqz')])
    codec = compression.load_codec(prior_dir=str(root / 'prior'))
    codes = {}
    for path in sorted(glob.glob(str(root / 'vqz' / '*.vqz'))):
      with open(path, 'rb') as f:
        codes[os.path.basename(path)[:-4]] = compression.read_codes(codec, f.read())[1]
    yield root, str(root / 'prior'), codes
  finally:
    if old is None:
      os.environ.pop('VQVAE_CACHE_DIR', None)
    else:
      os.environ['VQVAE_CACHE_DIR'] = old


def _other_layer0():
  return 'tables' if integer_prior.default_layer0() == 'conv' else 'conv'


def _configs():
  out = {'eigen-single-thread': ({'XLA_FLAGS': '--xla_cpu_multi_thread_eigen=false'}, []),
         'stock-malloc': ({'VQVAE_STOCK_MALLOC': '1'}, []),
         'four-host-devices': ({'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}, []),
         # the layer-0 formulation this machine does not use by default
         'other-layer0': ({'VQVAE_INT_LAYER0': _other_layer0()}, [])}
  if shutil.which('taskset') and len(os.sched_getaffinity(0)) > 1:
    out['one-core'] = ({}, ['taskset', '-c', str(min(os.sched_getaffinity(0)))])
  return out


@pytest.mark.parametrize('name', sorted(_configs()))
def test_files_decode_to_the_same_codes_elsewhere(coded, name):
  root, prior, codes = coded
  env_extra, prefix = _configs()[name]
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT, XLA_FLAGS='',
             VQVAE_CACHE_DIR=str(root / 'cache'))
  env.pop('VQVAE_STOCK_MALLOC', None)
  env.pop('VQVAE_INT_LAYER0', None)
  env.update(env_extra)
  files = sorted(glob.glob(str(root / 'vqz' / '*.vqz')))
  if name == 'four-host-devices':  # and another batch: a subset, reversed
    files = files[::-2]
  out = root / f'out-{name}'
  run = subprocess.run(prefix + [sys.executable, '-m', 'vqvae_jax', 'decompress', *files,
                                 '--prior', prior, '-o', str(out), '--save-codes'],
                       env=env, capture_output=True, text=True, timeout=300, check=False)
  assert run.returncode == 0, run.stderr[-2000:]
  for path in files:
    stem = os.path.basename(path)[:-4]
    np.testing.assert_array_equal(np.load(out / f'{stem}.npy'), codes[stem], err_msg=stem)
  assert len(files) >= 6


def test_a_file_alone_decodes_as_in_a_batch(coded):
  _, prior, codes = coded
  codec = compression.load_codec(prior_dir=prior)
  root = coded[0]
  stem = sorted(codes)[5]
  with open(root / 'vqz' / f'{stem}.vqz', 'rb') as f:
    np.testing.assert_array_equal(compression.read_codes(codec, f.read())[1], codes[stem])
