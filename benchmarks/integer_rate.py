"""Rate cost of the integer prior that codes version-2 files, against the float prior.

Prints ONE JSON line: over the first --grids code grids of a split (the prior
folder's cached `codes/<split>.npz`, or for a pretrained folder the split
encoded with its VQ-VAE; true labels),
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
from vqvae_jax import data  # noqa: E402
from vqvae_jax.runs import load_split, restore_prior, restore_vqvae, run_config  # noqa: E402
from vqvae_jax.evaluation import encode_split  # noqa: E402


def _split_codes(prior_dir: str, meta: dict, split: str, count: int):
  """(codes [n, h, w], labels [n]) of the first `count` grids of `split`: the
  prior folder's cached `codes/<split>.npz`, else (a pretrained folder) the
  split's images encoded with the prior's VQ-VAE."""
  path = os.path.join(prior_dir, 'codes', f'{split}.npz')
  if os.path.exists(path):
    with np.load(path) as f:
      return f['codes'][:count], f['labels'][:count]
  model, variables, vq_meta = restore_vqvae(meta['config']['model'])
  ds = load_split(run_config(vq_meta), split)
  codes = encode_split(model, variables, ds)[:count]
  return codes, np.asarray(data.relabel(ds, meta['class_names'])[:count], np.int32)


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
  codes, labels = _split_codes(args.prior, meta, args.split, args.grids)
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
      'prior': args.prior, 'prior_step': meta.get('step'),
      'k': coder.num_codes, 'layers': coder.num_layers, 'hidden': coder.hidden,
      'split': args.split, 'grids': len(codes),
      'float_bits_per_code': float_bits / n, 'integer_bits_per_code': integer_bits / n,
      'overhead': integer_bits / float_bits - 1.0, 'machine': runtime_info()}))


if __name__ == '__main__':
  main()
