"""Rate cost of the integer prior that codes version-2 files, against the float prior.

Prints ONE JSON line: over the first --grids code grids of a split (the prior
folder's cached `codes/<split>.npz`, true labels),
  float_bits_per_code     the float prior's ideal code length, -log2 softmax;
  integer_bits_per_code   -log2 of the integer prior's frequency tables (what the
                          range coder spends, up to its < 32 bits per file);
  overhead                integer / float - 1 (the target is < 0.02).

  python benchmarks/integer_rate.py --prior runs/fmnist-prior
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.machine import runtime_info  # noqa: E402
from vqvae_jax.codec import compression, entropy, integer_prior  # noqa: E402
from vqvae_jax.runs import restore_prior  # noqa: E402


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--prior', required=True)
  p.add_argument('--split', default='test')
  p.add_argument('--grids', type=int, default=2000)
  args = p.parse_args()
  prior, params, meta = restore_prior(args.prior)
  coder = compression.load_coder(args.prior, prior, params, meta['grid'])
  arrays = integer_prior.device_arrays(coder)
  with np.load(os.path.join(args.prior, 'codes', f'{args.split}.npz')) as f:
    codes, labels = f['codes'][:args.grids], f['labels'][:args.grids]
  log_softmax = jax.jit(lambda c, y: jax.nn.log_softmax(prior.apply({'params': params}, c, y)))
  float_bits = integer_bits = 0.0
  for s in range(0, len(codes), 250):
    c, y = codes[s:s + 250], labels[s:s + 250]
    logp = np.asarray(log_softmax(c, y), np.float64)
    float_bits -= np.take_along_axis(logp, c[..., None], -1).sum() / np.log(2.0)
    _, logits = entropy.integer_logits(coder, arrays, c, y)
    freqs = entropy.frequencies_from_logits(np.asarray(logits))
    freqs = freqs.reshape(len(c), -1, freqs.shape[-1])
    integer_bits += sum(float(entropy.table_bits(f, g)) for f, g in zip(freqs, c))
  n = codes.size
  print(json.dumps({
      'prior': os.path.abspath(args.prior), 'prior_step': meta.get('step'),
      'k': coder.num_codes, 'layers': coder.num_layers, 'hidden': coder.hidden,
      'split': args.split, 'grids': len(codes),
      'float_bits_per_code': float_bits / n, 'integer_bits_per_code': integer_bits / n,
      'overhead': integer_bits / float_bits - 1.0, 'machine': runtime_info()}))


if __name__ == '__main__':
  main()
