"""The `compress` and `decompress` commands: inputs, output names, batches.

Conventions as in CompressAI's `codec.py` and tensorflow-compression's `tfci.py`:
  * inputs: image files, folders of images and `.npz` files (key `images`,
    uint8 [N, H, W, C]; item i is named <stem>_<i:05d>);
  * outputs: without -o, next to the input with the other suffix (x.png ->
    x.vqz -> x.png), never replacing an existing file unless --force; with -o,
    a file name for one input or a folder;
  * a batch goes on after a failure: every failure is one `error:` line and
    the command exits with status 2 at the end if any failed;
  * `decompress` finds its model by the file's fingerprint (`codec.registry`)
    unless --model / --prior is given, and says which it used.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from vqvae_jax import fileio, grids
from vqvae_jax.codec import compose, compression, registry, vqz
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


def _report(error: UserError) -> None:
  print(f'error: {error}', file=sys.stderr)


def _chunks(items, outputs, size: int = compression.DECODE_BATCH):
  for start in range(0, len(items), size):
    yield items[start:start + size], outputs[start:start + size]


def _finish(failed: int, total: int, what: str) -> None:
  if failed:
    raise UserError(f'{failed} of {total} {what} failed (see above)')


def compress(args) -> None:
  """The `compress` command (args: images, model, prior, method, label, output,
  force, verbose): images are loaded, coded and written in batches."""
  codec = compression.load_codec(args.model, args.prior)
  method = args.method or ('prior' if args.prior else 'fixed')
  items = image_items(args.images, codec.channels)
  outputs = output_paths(items, args.output, '.vqz')
  totals = {'bytes': 0, 'pixels': 0, 'images': 0, 'psnr': []}
  failed = 0
  for part, outs in _chunks(items, outputs):
    start = time.perf_counter()
    images = {}
    for n, (item, out) in enumerate(zip(part, outs)):
      try:
        _check_new(out, args.output is not None, args.force)
        images[n] = item.load()
      except UserError as e:
        _report(e)
        failed += 1
    results = compression.compress_batch(codec, list(images.values()), method, args.label,
                                         reconstruct=args.verbose)
    coded = {n: r for n, r in zip(images, results) if not isinstance(r, UserError)}
    written = dict(zip(coded, fileio.atomic_write_many([(outs[n], r.data)
                                                        for n, r in coded.items()])))
    seconds = (time.perf_counter() - start) / max(1, len(images))
    for n, result in zip(images, results):
      error = (UserError(f'{part[n].name}: {result}') if isinstance(result, UserError)
               else written[n])
      if error is not None:
        _report(error)
        failed += 1
        continue
      size, pixels = os.path.getsize(outs[n]), images[n].shape[0] * images[n].shape[1]
      label = '' if result.header.label is None else f', label {result.header.label}'
      extra = (f', PSNR {result.psnr:.2f} dB{label}, {seconds:.4f} s per image in its batch'
               if args.verbose else label)
      print(f'{part[n].name} -> {outs[n]}: {size} bytes, {8.0 * size / pixels:.4f} bpp{extra}')
      totals['bytes'] += size
      totals['pixels'] += pixels
      totals['images'] += 1
      if result.psnr is not None:
        totals['psnr'].append(result.psnr)
  if totals['images']:
    registry.remember(codec, args.model, args.prior)
    psnr = f', mean PSNR {np.mean(totals["psnr"]):.2f} dB' if totals['psnr'] else ''
    print(f'total: {totals["images"]} images, {totals["bytes"]} bytes, '
          f'{8.0 * totals["bytes"] / totals["pixels"]:.4f} bpp{psnr} ({method})')
  _finish(failed, len(items), 'images')


def _codec_for(header, args, codecs: dict):
  """The key of the codec for a file in `codecs` (loaded on first use):
  --model / --prior, else the registry's match."""
  if args.model or args.prior:
    key = (args.model, args.prior)
  else:
    key = registry.find(header)
    if key is None:
      raise UserError(f'no known model matches fingerprint {_fingerprint(header)} (looked in '
                      f'{registry.registry_path()} and {registry.PRETRAINED}): '
                      'pass --model / --prior')
  if key not in codecs:
    codecs[key] = compression.load_codec(*key)
    source = 'given' if args.model or args.prior else 'from the registry'
    model = key[0] or "the prior's VQ-VAE"
    print(f'using model {model}, prior {key[1] or "none"} ({source})')
  return key


def _fingerprint(header) -> str:
  if header.version == 1:
    return header.model_fingerprint.hex()
  return header.fingerprint.hex()


def decompress(args) -> None:
  """The `decompress` command (args: files, model, prior, output, save_codes,
  force, verbose): files of one model are decoded in batches."""
  items = [Item(p, os.path.dirname(p), None) for p in args.files]
  outputs = output_paths(items, args.output, '.png')
  codecs, failed = {}, 0
  for part, outs in _chunks(items, outputs):
    start = time.perf_counter()
    by_codec = {}
    for n, (item, out) in enumerate(zip(part, outs)):
      try:
        _check_new(out, args.output is not None, args.force)
        data = read_bytes(item.name)
        header, _ = vqz.unpack(data, item.name)
        key = _codec_for(header, args, codecs)
        by_codec.setdefault(key, []).append((n, data))
      except UserError as e:
        _report(e)
        failed += 1
    for key, files in by_codec.items():
      results = compression.decode_files(codecs[key], [d for _, d in files],
                                         [part[n].name for n, _ in files])
      decoded = [(n, r) for (n, _), r in zip(files, results) if not isinstance(r, UserError)]
      written = dict(zip([n for n, _ in decoded], fileio.atomic_write_many(
          [(outs[n], grids.png_bytes(r[2])) for n, r in decoded])))
      seconds = (time.perf_counter() - start) / max(1, len(files))
      for (n, data), result in zip(files, results):
        try:
          if isinstance(result, UserError):
            raise result
          if written[n] is not None:
            raise written[n]
          header, codes, _ = result
          if args.save_codes:
            compose.save_codes(os.path.splitext(outs[n])[0] + '.npy', codes)
        except UserError as e:
          _report(e)
          failed += 1
          continue
        extra = ''
        if args.verbose:
          bpp = 8.0 * len(data) / (header.height * header.width)
          extra = f', {len(data)} bytes, {bpp:.4f} bpp, {seconds:.4f} s per file in its batch'
        print(f'{part[n].name} -> {outs[n]} ({header.width}x{header.height}{extra})')
  _finish(failed, len(items), 'files')


def read_bytes(path: str) -> bytes:
  """A file's bytes; UserError if it cannot be read."""
  try:
    with open(path, 'rb') as f:
      return f.read()
  except OSError as e:
    raise UserError(f'cannot read {path}: {e.strerror}') from e
