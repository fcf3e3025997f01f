"""The commands of `python -m vqvae_jax <command> ...` (`vqvae_jax/__main__.py`).

  sample        class-conditional samples from a trained prior: a labelled PNG grid or .npz
  compress      images -> .vqz files (fixed-length codes, or entropy-coded with the prior)
  decompress    .vqz files -> PNG images
  info          print the header of .vqz files (no model needed)
  compose       swap the code cells of A under a mask with B's, decode
  decode-codes  decode a saved code grid (.npy) to a PNG
  evaluate      MSE, PSNR, SSIM, codebook usage (+ prior bits/dim) on a split, as JSON
  export        a run's parameters and config as a pretrained folder

The commands import JAX (and what imports it) inside their functions: `main`
tunes malloc first (`flags.tune_malloc`), which must happen before JAX loads.
"""
from __future__ import annotations

import argparse
import io
import os
import sys

import numpy as np

from vqvae_jax import fileio
from vqvae_jax.cli import flags
from vqvae_jax.errors import UserError, cli


def _sample(args):
  import jax  # pylint: disable=g-import-not-at-top
  from vqvae_jax import grids, runs  # pylint: disable=g-import-not-at-top
  from vqvae_jax.models import sampling  # pylint: disable=g-import-not-at-top
  if args.temperature <= 0 or args.per_class < 1:
    raise UserError('--temperature must be > 0 and --per-class >= 1')
  if not args.output.lower().endswith(('.png', '.npz')):
    raise UserError(f'-o {args.output}: name a .png (labelled grid) or .npz (arrays) file')
  prior, params, meta = runs.restore_prior(args.prior)
  vq_dir = args.model or meta['config']['model']
  vq_model, vq_vars, vq_meta = runs.restore_vqvae(vq_dir)
  runs.check_prior_matches(meta, vq_vars, args.prior, vq_dir)
  names = meta['class_names']
  images, labels = sampling.sample_images(
      prior, params, vq_model, vq_vars, len(names), args.per_class, meta['grid'],
      jax.random.key(args.seed), args.temperature)
  if args.output.lower().endswith('.npz'):
    _save_npz(args.output, images=images, labels=labels.astype(np.int32),
              class_names=np.asarray(names, dtype=str))
  else:
    grids.save_png(grids.labelled_grid(images, names, args.per_class), args.output)
  print(f'wrote {args.output} ({len(names)} classes x {args.per_class} samples)')
  if not args.no_consistency:
    _print_consistency(vq_meta, args.data_folder, images, labels)


def _save_npz(path, **arrays):
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  fileio.atomic_write(path, buf.getvalue())


def _print_consistency(vq_meta, data_folder, images, labels):
  """Prints the fraction of samples a classifier of the real data labels as their
  class (training it once if needed), or why it cannot be measured."""
  from vqvae_jax import classifier, runs  # pylint: disable=g-import-not-at-top
  names = vq_meta['class_names']
  if len(names) < 2:
    print('class consistency: not applicable (the data set has one class)')
    return
  config = runs.run_config(vq_meta, data_folder)
  print(f'class consistency: a classifier of {config.dataset} (trained once on its real '
        'training split, then cached) ...', flush=True)
  try:
    trained = classifier.get(config, names)
  except UserError as e:
    print(f'class consistency: not measured ({e})')
    return
  value = classifier.consistency(trained, images, labels)
  print(f'class consistency: {100 * value:.1f}% of {len(labels)} samples labelled as their '
        f'class (classifier test accuracy {100 * trained.test_accuracy:.1f}%)')


def _compress(args):
  from vqvae_jax.cli import codec_commands  # pylint: disable=g-import-not-at-top
  codec_commands.compress(args)


def _decompress(args):
  from vqvae_jax.cli import codec_commands  # pylint: disable=g-import-not-at-top
  codec_commands.decompress(args)


def _info(args):
  from vqvae_jax.cli import codec_commands  # pylint: disable=g-import-not-at-top
  from vqvae_jax.codec import compression  # pylint: disable=g-import-not-at-top
  failed = 0
  for path in args.files:
    try:
      fields = compression.info(codec_commands.read_bytes(path), path)
    except UserError as e:
      print(f'error: {e}', file=sys.stderr)
      failed += 1
      continue
    print(path)
    for key, value in fields.items():
      print(f'  {key}: {value}')
  if failed:
    raise UserError(f'{failed} of {len(args.files)} files failed (see above)')


def _compose(args):
  from vqvae_jax import grids  # pylint: disable=g-import-not-at-top
  from vqvae_jax.codec import compose, compression  # pylint: disable=g-import-not-at-top
  codec = compression.load_codec(args.model, args.prior)
  codes, image = compose.compose(codec, args.a, args.b, args.mask)
  grids.save_png(image, args.output)
  if args.save_codes:
    compose.save_codes(args.save_codes, codes)
  print(f'wrote {args.output} ({codes.shape[0]}x{codes.shape[1]} codes)')


def _decode_codes(args):
  from vqvae_jax import grids  # pylint: disable=g-import-not-at-top
  from vqvae_jax.codec import compose, compression  # pylint: disable=g-import-not-at-top
  codec = compression.load_codec(args.model, None)
  codes = compose.load_codes(codec, args.codes)
  images = compression.decode_codes(codec, codes)
  grid = images[0] if len(images) == 1 else grids.make_grid(images, ncol=min(8, len(images)))
  grids.save_png(grid, args.output)
  print(f'wrote {args.output} ({len(images)} images)')


def _add_batch_flags(parser):
  parser.add_argument('--force', action='store_true',
                      help='replace existing outputs when -o is not given')
  parser.add_argument('-v', '--verbose', action='store_true',
                      help='also print bits per pixel of the real file and timing')


def _add_codec_commands(sub):
  c = sub.add_parser('compress', help='compress images to .vqz files')
  c.add_argument('images', nargs='+', help='image files (PNG, JPEG, ...), folders of images, '
                                           'or .npz files (key images, uint8 [N, H, W, C])')
  c.add_argument('--model', default=None, help='the VQ-VAE folder (default: the prior\'s)')
  c.add_argument('--prior', default=None, help='the prior folder: entropy-code the codes')
  c.add_argument('--method', choices=('fixed', 'prior'), default=None,
                 help='fixed: ceil(log2 K) bits per code; prior: range coding with the '
                      'prior (default: prior if --prior is given, else fixed)')
  c.add_argument('--label', default=None,
                 help='class name or index to condition on (default: the shortest)')
  c.add_argument('-o', '--output', default=None,
                 help='output folder, or a file name ending in .vqz for one image '
                      '(default: x.vqz next to each x.png)')
  _add_batch_flags(c)
  d = sub.add_parser('decompress', help='decompress .vqz files to PNG')
  d.add_argument('files', nargs='+')
  d.add_argument('--model', default=None,
                 help='the VQ-VAE folder (default: found from the file, see README)')
  d.add_argument('--prior', default=None, help='the prior folder (entropy-coded files)')
  d.add_argument('-o', '--output', default=None,
                 help='output folder, or a file name ending in .png for one file '
                      '(default: x.png next to each x.vqz)')
  _add_batch_flags(d)
  d.add_argument('--save-codes', action='store_true', help='also write the codes as .npy')
  i = sub.add_parser('info', help='print the header of .vqz files')
  i.add_argument('files', nargs='+')
  m = sub.add_parser('compose', help='A with the code cells under a mask taken from B')
  m.add_argument('a', help='image, .npy code grid or .vqz file')
  m.add_argument('b', help='the same kind of input, same code grid size as A')
  m.add_argument('--mask', required=True, help='left, right, top, bottom, a .npy boolean '
                                               'grid or a mask image (white = from B)')
  m.add_argument('--model', default=None, help='the VQ-VAE folder (default: the prior\'s)')
  m.add_argument('--prior', default=None, help='the prior folder (entropy-coded .vqz inputs)')
  m.add_argument('-o', '--output', default='composed.png')
  m.add_argument('--save-codes', default=None, metavar='NPY', help='also save the codes')
  g = sub.add_parser('decode-codes', help='decode a saved code grid (.npy) to PNG')
  g.add_argument('codes', help='.npy with codes [h, w] or [B, h, w]')
  g.add_argument('--model', required=True, help='the VQ-VAE folder')
  g.add_argument('-o', '--output', default='decoded.png')


def _evaluate(args):
  from vqvae_jax import evaluation, grids, pretrained, runs  # pylint: disable=g-import-not-at-top
  if args.per_class < 0:
    raise UserError(f'--per-class must be >= 0, got {args.per_class}')
  if not args.model:
    if not args.prior:
      raise UserError('--model (the VQ-VAE folder) or --prior is required')
    args.model = runs.restore_prior(args.prior)[2]['config']['model']
  result = evaluation.evaluate(args.model, split=args.split, prior_dir=args.prior,
                               which=args.which, batch_size=args.batch_size,
                               data_folder=args.data_folder,
                               consistency_per_class=args.per_class)
  print(evaluation.format_table(result))
  output = args.output
  if not output and not pretrained.is_pretrained(args.model):  # shipped folders stay as they are
    output = os.path.join(args.model, f'evaluation_{args.split}.json')
  if output:
    fileio.write_json(output, result)
    print(f'wrote {output}')
  if args.recon_grid:
    model, variables, meta = runs.restore_vqvae(args.model, which=args.which)
    ds = runs.load_split(runs.run_config(meta, args.data_folder), args.split)
    grids.save_png(grids.reconstruction_grid(model, variables, ds.images[:args.num_recon]),
                   args.recon_grid)
    print(f'wrote {args.recon_grid} (top: {args.split} images, bottom: reconstructions)')


def _export(args):
  from vqvae_jax import evaluation, export  # pylint: disable=g-import-not-at-top
  result = export.export(args.model, args.output, prior_dir=args.prior,
                         data_folder=args.data_folder, per_class=args.per_class,
                         dtype=args.dtype)
  print(evaluation.format_table(result))
  print(f'wrote {args.output}' + (f' and {args.output}-prior' if args.prior else ''))


def _add_export_command(sub):
  x = sub.add_parser('export', help='a run\'s parameters and config as a pretrained folder')
  x.add_argument('--model', required=True, help='the VQ-VAE output folder (best checkpoint)')
  x.add_argument('--prior', default=None, help='its prior\'s folder: written to OUTPUT-prior')
  x.add_argument('-o', '--output', required=True, help='the pretrained folder to write')
  x.add_argument('--data-folder', default=None, help='default: the training run\'s')
  x.add_argument('--per-class', type=int, default=100,
                 help='samples a class for the recorded class consistency')
  x.add_argument('--dtype', default='float32', choices=('float32', 'float16'),
                 help='storage of the parameters (float16: half the size, measured as shipped)')


def _add_evaluate_command(sub):
  e = sub.add_parser('evaluate', help='reconstruction quality, codebook usage and prior NLL')
  e.add_argument('--model', default=None,
                 help='the VQ-VAE folder (default: the one --prior was trained on)')
  e.add_argument('--prior', default=None, help='a prior folder trained on this VQ-VAE')
  e.add_argument('--split', default='test', choices=('train', 'valid', 'test'))
  e.add_argument('--which', default='best', choices=('best', 'latest'), help='checkpoint')
  e.add_argument('--data-folder', default=None, help='default: the training run\'s')
  e.add_argument('--batch-size', type=int, default=256)
  e.add_argument('-o', '--output', default=None,
                 help='JSON file (default: <model>/evaluation_<split>.json)')
  e.add_argument('--recon-grid', default=None, metavar='PNG',
                 help='also write originals over reconstructions of the first images')
  e.add_argument('--num-recon', type=int, default=32)
  e.add_argument('--per-class', type=int, default=100,
                 help='with --prior: samples per class for the class consistency (0: skip)')


@cli
def main(argv=None):
  parser = argparse.ArgumentParser(prog='python -m vqvae_jax', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest='command', required=True)
  s = sub.add_parser('sample', help='sample a class-conditional grid from a trained prior')
  s.add_argument('--prior', required=True, help='the prior output folder')
  s.add_argument('--model', default=None, help='the VQ-VAE folder (default: the one the '
                                               'prior was trained on)')
  s.add_argument('-o', '--output', default='samples.png',
                 help='.png: one labelled row per class; .npz: images [N, H, W, C] uint8 '
                      'and labels [N] int32, N = classes x --per-class')
  s.add_argument('--per-class', type=int, default=8)
  s.add_argument('--temperature', type=float, default=1.0)
  s.add_argument('--seed', type=int, default=0)
  s.add_argument('--no-consistency', action='store_true',
                 help='do not measure class consistency after sampling')
  s.add_argument('--data-folder', default=None,
                 help='where the VQ-VAE\'s data set is now (for the classifier)')
  _add_codec_commands(sub)
  _add_evaluate_command(sub)
  _add_export_command(sub)
  args = parser.parse_args(argv)
  flags.tune_malloc()
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.ERROR)
  if args.command == 'sample':
    _sample(args)
  elif args.command == 'evaluate':
    _evaluate(args)
  elif args.command == 'export':
    _export(args)
  else:
    {'compress': _compress, 'decompress': _decompress, 'info': _info, 'compose': _compose,
     'decode-codes': _decode_codes}[args.command](args)

