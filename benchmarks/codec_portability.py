"""Do .vqz files decode to the same codes under other runtime configurations?

Compresses --images real test images with a prior folder in this process, then
decompresses them with `python -m vqvae_jax decompress --save-codes` in fresh
processes: default, single-threaded Eigen, pinned to one core, stock malloc,
4 host devices, and each formulation of the integer prior's layer 0 (the
environment variable VQVAE_INT_LAYER0). Prints ONE JSON line: per configuration, how many files
decoded and how many to exactly the encoder's codes.

  python benchmarks/codec_portability.py --prior runs/fmnist-prior --images 60
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)
# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.common import prior_split_images  # noqa: E402
from benchmarks.machine import runtime_info  # noqa: E402
from vqvae_jax.codec import compression, integer_prior  # noqa: E402

CONFIGS = {
    'default': ({}, []),
    'eigen-single-thread': ({'XLA_FLAGS': '--xla_cpu_multi_thread_eigen=false'}, []),
    'one-core': ({}, ['taskset', '-c', '0']),
    'stock-malloc': ({'VQVAE_STOCK_MALLOC': '1'}, []),
    'four-host-devices': ({'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}, []),
    # both formulations of the integer prior's layer 0, whichever this machine defaults to
    'layer0-tables': ({'VQVAE_INT_LAYER0': 'tables'}, []),
    'layer0-conv': ({'VQVAE_INT_LAYER0': 'conv'}, []),
}


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--prior', required=True)
  p.add_argument('--images', type=int, default=60)
  args = p.parse_args()
  codec = compression.load_codec(prior_dir=args.prior)
  images = prior_split_images(args.prior, 'test', args.images)
  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    names = []
    for i, result in enumerate(compression.compress_batch(codec, list(images))):
      names.append(os.path.join(tmp, f'{i:03d}.vqz'))
      with open(names[-1], 'wb') as f:
        f.write(result.data)
    want = {os.path.basename(n)[:-4]: c for n, c in zip(
        names, compression.encode_images(codec, np.stack([compression.pad_image(x)
                                                          for x in images])))}
    for name, (env_extra, prefix) in CONFIGS.items():
      if prefix and not shutil.which(prefix[0]):
        continue
      out = os.path.join(tmp, name)
      env = dict(os.environ, PYTHONPATH=_ROOT, XLA_FLAGS='')
      env.pop('VQVAE_STOCK_MALLOC', None)
      env.pop('VQVAE_INT_LAYER0', None)
      env.update(env_extra)
      run = subprocess.run(prefix + [sys.executable, '-m', 'vqvae_jax', 'decompress', *names,
                                     '--prior', args.prior, '-o', out, '--save-codes'],
                           env=env, capture_output=True, text=True, check=False)
      got = {os.path.basename(f)[:-4]: np.load(f) for f in glob.glob(os.path.join(out, '*.npy'))}
      results[name] = {'files': len(names), 'decoded': len(got),
                       'exact': sum(np.array_equal(got[k], want[k]) for k in got),
                       'exit_code': run.returncode}
  print(json.dumps({'prior': args.prior, 'layer0_default': integer_prior.default_layer0(), 'configs': results,
                    'machine': runtime_info()}))


if __name__ == '__main__':
  main()
