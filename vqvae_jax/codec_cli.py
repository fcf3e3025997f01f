"""The `compress` and `decompress` commands: inputs, output names, batches.

Conventions as in CompressAI's `codec.py` and tensorflow-compression's `tfci.py`:
  * inputs: image files, folders of images and `.npz` files (key `images`,
    uint8 [N, H, W, C]; item i is named <stem>_<i:05d>);
  * outputs: without -o, next to the input with the other suffix (x.png ->
    x.vqz -> x.png), never replacing an existing file unless --force; with -o,
    a file name for one input or a folder;
  * a batch goes on after a failure: every failure is one `error:` line and
    the command exits with status 2 at the end if any failed;
  * `decompress` finds its model by the file's fingerprint (`model_registry`)
    unless --model / --prior is given, and says which it used.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from vqvae_jax import codec_format, compression, fileio, grids, model_registry
from vqvae_jax.errors import UserError

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp', '.tif', '.tiff')


class Item:
  """One input: a name, the folder its default output goes to, and a loader."""

  def __init__(self, name: str, folder: str, load):
    self.name, self.folder, self.load = name, folder, load

  @property
  def stem(self) -> str:
    return os.path.splitext(os.path.basename(self.name))[0]


def image_items(paths, channels: int) -> list[Item]:
  """Image files, folders of images and .npz files -> one Item per image."""
  items = []
  for path in paths:
    if os.path.isdir(path):
      names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_SUFFIXES))
      if not names:
        raise UserError(f'{path} holds no images ({", ".join(IMAGE_SUFFIXES)})')
      items += image_items([os.path.join(path, n) for n in names], channels)
    elif path.endswith('.npz'):
      items += _npz_items(path)
    else:
      items.append(Item(path, os.path.dirname(path),
                        lambda p=path: compression.load_image(p, channels)))
  return items


def _npz_items(path: str) -> list[Item]:
  try:
    with np.load(path, allow_pickle=False) as f:
      images = f['images']
  except (OSError, ValueError, KeyError) as e:
    raise UserError(f'cannot read {path} as an .npz with an `images` array: {e}') from e
  if images.dtype != np.uint8 or images.ndim != 4:
    raise UserError(f'{path}: `images` must be uint8 [N, H, W, C], got {images.dtype} '
                    f'{images.shape}')
  stem = os.path.splitext(os.path.basename(path))[0]
  return [Item(f'{stem}_{i:05d}', os.path.dirname(path), lambda x=x: x)
          for i, x in enumerate(images)]


def output_paths(items, output: str | None, suffix: str) -> list[str]:
  """One output per input: next to it without -o; OUT itself for one input and
  an OUT ending in `suffix`; else OUT/<stem><suffix>."""
  if output is None:
    return [os.path.join(i.folder, i.stem + suffix) for i in items]
  if len(items) == 1 and output.endswith(suffix):
    return [output]
  stems = [i.stem for i in items]
  if len(set(stems)) != len(stems):
    raise UserError('two inputs have the same file name; compress them into separate folders')
  if os.path.isfile(output):
    raise UserError(f'-o {output} is an existing file; with several inputs (or an output '
                    f'name not ending in {suffix}) -o names a folder')
  return [os.path.join(output, s + suffix) for s in stems]


def _check_new(out: str, explicit: bool, force: bool) -> None:
  if not explicit and not force and os.path.exists(out):
    raise UserError(f'{out} exists: pass --force to replace it, or -o')


def _batch(items, outputs, run_one) -> int:
  """Runs `run_one(item, out)` for each; prints a line per failure; -> failures."""
  failed = 0
  for item, out in zip(items, outputs):
    try:
      run_one(item, out)
    except UserError as e:
      print(f'error: {e}', file=sys.stderr)
      failed += 1
  return failed


def _finish(failed: int, total: int, what: str) -> None:
  if failed:
    raise UserError(f'{failed} of {total} {what} failed (see above)')


def compress(args) -> None:
  """The `compress` command (args: images, model, prior, method, label, output,
  force, verbose)."""
  codec = compression.load_codec(args.model, args.prior)
  method = args.method or ('prior' if args.prior else 'fixed')
  items = image_items(args.images, codec.channels)
  outputs = output_paths(items, args.output, '.vqz')
  totals = {'bytes': 0, 'pixels': 0, 'psnr': []}

  def one(item, out):
    _check_new(out, args.output is not None, args.force)
    start = time.perf_counter()
    image = item.load()
    result = compression.compress(codec, image, method, args.label)
    fileio.atomic_write(out, result.data)
    seconds = time.perf_counter() - start
    size, pixels = os.path.getsize(out), image.shape[0] * image.shape[1]
    label = '' if result.header.label is None else f', label {result.header.label}'
    timing = f', {seconds:.3f} s' if args.verbose else ''
    print(f'{item.name} -> {out}: {size} bytes, {8.0 * size / pixels:.4f} bpp, '
          f'PSNR {result.psnr:.2f} dB{label}{timing}')
    totals['bytes'] += size
    totals['pixels'] += pixels
    totals['psnr'].append(result.psnr)

  failed = _batch(items, outputs, one)
  if totals['psnr']:
    model_registry.remember(codec, args.model, args.prior)
    print(f'total: {len(totals["psnr"])} images, {totals["bytes"]} bytes, '
          f'{8.0 * totals["bytes"] / totals["pixels"]:.4f} bpp, mean PSNR '
          f'{np.mean(totals["psnr"]):.2f} dB ({method})')
  _finish(failed, len(items), 'images')


def _codec_for(header, args, codecs: dict):
  """The codec for a file: --model / --prior, else the registry's match."""
  if args.model or args.prior:
    key = (args.model, args.prior)
  else:
    key = model_registry.find(header)
    if key is None:
      raise UserError(f'no known model matches fingerprint {_fingerprint(header)} (looked in '
                      f'{model_registry.registry_path()} and {model_registry.PRETRAINED}): '
                      'pass --model / --prior')
  if key not in codecs:
    codecs[key] = compression.load_codec(*key)
    source = 'given' if args.model or args.prior else 'from the registry'
    model = key[0] or "the prior's VQ-VAE"
    print(f'using model {model}, prior {key[1] or "none"} ({source})')
  return codecs[key]


def _fingerprint(header) -> str:
  if header.version == 1:
    return header.model_fingerprint.hex()
  return header.fingerprint.hex()


def decompress(args) -> None:
  """The `decompress` command (args: files, model, prior, output, save_codes,
  force, verbose)."""
  from vqvae_jax import compose  # pylint: disable=g-import-not-at-top
  items = [Item(p, os.path.dirname(p), None) for p in args.files]
  outputs = output_paths(items, args.output, '.png')
  codecs = {}

  def one(item, out):
    _check_new(out, args.output is not None, args.force)
    start = time.perf_counter()
    data = read_bytes(item.name)
    header, _ = codec_format.unpack(data, item.name)
    codec = _codec_for(header, args, codecs)
    header, codes, image = compression.decode_file(codec, data, item.name)
    grids.save_png(image, out)
    if args.save_codes:
      compose.save_codes(os.path.splitext(out)[0] + '.npy', codes)
    extra = ''
    if args.verbose:
      bpp = 8.0 * len(data) / (header.height * header.width)
      extra = f', {len(data)} bytes, {bpp:.4f} bpp, {time.perf_counter() - start:.3f} s'
    print(f'{item.name} -> {out} ({header.width}x{header.height}{extra})')

  _finish(_batch(items, outputs, one), len(items), 'files')


def read_bytes(path: str) -> bytes:
  """A file's bytes; UserError if it cannot be read."""
  try:
    with open(path, 'rb') as f:
      return f.read()
  except OSError as e:
    raise UserError(f'cannot read {path}: {e.strerror}') from e
