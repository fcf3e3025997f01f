"""Command line: `python -m vqvae_jax <command> ...`.

  sample   class-conditional samples from a trained prior, as a labelled PNG grid
"""
from __future__ import annotations

import argparse
import os
import sys

from vqvae_jax.errors import cli


def _sample(args):
  import jax  # pylint: disable=g-import-not-at-top
  from vqvae_jax import grids, prior_training, training  # pylint: disable=g-import-not-at-top
  prior, params, meta = prior_training.restore_prior(args.prior)
  vq_dir = args.model or meta['config']['model']
  vq_model, vq_vars, _ = training.restore_vqvae(vq_dir)
  if prior_training._fingerprint(vq_vars) != meta['vqvae_fingerprint']:  # pylint: disable=protected-access
    from vqvae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
    raise UserError(f'the VQ-VAE in {vq_dir} is not the one this prior was trained on')
  if args.temperature <= 0 or args.per_class < 1:
    from vqvae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
    raise UserError('--temperature must be > 0 and --per-class >= 1')
  image = prior_training.sample_grid(prior, params, vq_model, vq_vars, meta['class_names'],
                                     args.per_class, meta['grid'],
                                     jax.random.key(args.seed), args.temperature)
  grids.save_png(image, args.output)
  print(f'wrote {args.output} ({len(meta["class_names"])} classes x {args.per_class} samples)')


@cli
def main(argv=None):
  parser = argparse.ArgumentParser(prog='python -m vqvae_jax', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest='command', required=True)
  s = sub.add_parser('sample', help='sample a class-conditional grid from a trained prior')
  s.add_argument('--prior', required=True, help='the prior output folder')
  s.add_argument('--model', default=None, help='the VQ-VAE folder (default: the one the '
                                               'prior was trained on)')
  s.add_argument('-o', '--output', default='samples.png')
  s.add_argument('--per-class', type=int, default=8)
  s.add_argument('--temperature', type=float, default=1.0)
  s.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.ERROR)
  if args.command == 'sample':
    _sample(args)


if __name__ == '__main__':
  os.environ.setdefault('XLA_FLAGS', '--xla_cpu_experimental_ynn_fusion_type=')
  sys.exit(main())
