"""Codec throughput: prior-coded compress and decompress, images per second.

Prints ONE JSON line on stdout (progress on stderr):

  compress_imgs_per_s     PNG files -> .vqz files through the `compress`
      command's code (codec_commands.compress: model loading, read, VQ-VAE
      encode, label choice from one pass of the integer prior over a shortlist
      of labels, range coding, write), timed after one warm-up batch has
      compiled every program, so process start-up (imports, compilation) is
      excluded and the command's model loading (`model_load_s`) included.
  decompress_imgs_per_s   .vqz -> PNG files the same way (codec_commands.decompress).
  bits_per_pixel, psnr_db whole files (headers included) and the mean PSNR.
  exact                   every decoded code grid equals the encoder's.
  label_search            the encoder tries a shortlist of labels (the prior's
      label table, `entropy.label_candidates`) instead of every label: on the
      first --label-check images, the payload bytes with the shortlist and with
      every label tried, their ratio, and how often both chose the same label.
  network                 the integer prior alone, per formulation of its layer 0
      (`integer_prior.device_arrays(layer0=...)`, the same integers): grids/s
      of the whole-grid pass (256 grids, one label: the encoder's work per
      candidate label) and of the incremental decoder (row and position steps
      of 1024 grids), and `layer0_default`, the one this machine uses.
  other_procs_cpu_frac    other processes' share of the machine (> 0.05: loaded).
  machine                 CPU, ISA flags, JAX version, date (benchmarks.machine).

Usage (a prior folder whose VQ-VAE was trained on Fashion-MNIST):
  python benchmarks/bench_codec.py --prior runs/fmnist-prior --images 2048
"""
from __future__ import annotations

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)
from vqvae_jax.cli.flags import tune_malloc  # noqa: E402  (as the entry points do)
MALLOC_TUNED = tune_malloc()

# pylint: disable=g-import-not-at-top,wrong-import-position
import argparse  # noqa: E402
import contextlib  # noqa: E402
import glob  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.common import prior_split_images  # noqa: E402
from benchmarks.machine import CpuSnap, runtime_info  # noqa: E402
from vqvae_jax.cli import codec_commands  # noqa: E402
from vqvae_jax.codec import compression, entropy, integer_prior  # noqa: E402


def log(*a):
  print(*a, file=sys.stderr, flush=True)


def _args(**kw):
  base = dict(model=None, prior=None, method='prior', label=None, output=None, force=True,
              verbose=False, save_codes=False)
  base.update(kw)
  return argparse.Namespace(**base)


def _quiet(fn, *a):
  with contextlib.redirect_stdout(io.StringIO()):
    return fn(*a)


def _label_search(codec, codes) -> dict:
  """Payload bytes of `codes` coded with the label shortlist and with every label."""
  log(f'label shortlist against every label on {len(codes)} grids')
  short = entropy.encode_batch(codec.coder, codec.coder_arrays, codes)
  every = entropy.encode_batch(codec.coder, codec.coder_arrays, codes,
                               shortlist=codec.coder.num_classes)
  a, b = sum(len(p) for p, _ in short), sum(len(p) for p, _ in every)
  return {'grids': len(codes), 'shortlist': min(entropy.SHORTLIST, codec.coder.num_classes),
          'has_table': integer_prior.LABEL_TABLE in codec.coder.arrays,
          'payload_bytes_shortlist': a, 'payload_bytes_every_label': b,
          'ratio': a / max(b, 1),
          'same_label': float(np.mean([x[1] == y[1] for x, y in zip(short, every)]))}


def _network(codec, codes, rounds: int = 3) -> dict:
  """Grids/s of the integer prior's whole-grid pass and incremental decoder
  for each layer-0 formulation (best of `rounds`, alternating)."""
  iprior = codec.coder
  labels = np.zeros(len(codes), np.int32)
  whole, dec = codes[:256], codes[:compression.DECODE_BATCH]

  def decoder(arrays):
    b, (h, w) = len(dec), dec.shape[1:]
    v_cache, h_row, from_vs = integer_prior.init_caches(iprior, b, (h, w))
    grids, dl = jax.numpy.asarray(dec), jax.numpy.asarray(labels[:b])
    out = None
    for i in range(h):
      from_vs, v_cache = integer_prior.row_step(iprior, arrays, grids, v_cache, from_vs,
                                                jax.numpy.int32(i), dl)
      for j in range(w):
        out, h_row = integer_prior.position_step(iprior, arrays, grids, from_vs, h_row,
                                                 jax.numpy.int32(i), jax.numpy.int32(j), dl)
    return jax.block_until_ready(out)

  runs = {}
  for layer0 in ('tables', 'conv'):
    arrays = integer_prior.device_arrays(iprior, layer0)
    runs[layer0] = (
        lambda a=arrays: jax.block_until_ready(
            integer_prior.logits(iprior, a, whole, labels[:len(whole)])),
        lambda a=arrays: decoder(a))
  best = {k: [float('inf'), float('inf')] for k in runs}
  for fns in runs.values():
    for fn in fns:
      fn()  # compile
  for _ in range(rounds):
    for k, fns in runs.items():
      for n, fn in enumerate(fns):
        t = time.perf_counter()
        fn()
        best[k][n] = min(best[k][n], time.perf_counter() - t)
  return {'layer0_default': integer_prior.default_layer0(),
          **{k: {'whole_grid_grids_per_s': len(whole) / v[0],
                 'decoder_grids_per_s': len(dec) / v[1]} for k, v in best.items()}}


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--prior', required=True)
  p.add_argument('--images', type=int, default=2048,
                 help='test images to code (a multiple of compression.DECODE_BATCH times '
                      'the same compiled programs)')
  p.add_argument('--split', default='test')
  p.add_argument('--label-check', type=int, default=256,
                 help='images coded both ways to measure the label shortlist (0: skip)')
  args = p.parse_args()
  codec = compression.load_codec(prior_dir=args.prior)
  images = prior_split_images(args.prior, args.split, args.images)
  with tempfile.TemporaryDirectory() as tmp:
    src, vqz, out = (os.path.join(tmp, d) for d in ('png', 'vqz', 'out'))
    for d in (src, vqz, out):
      os.makedirs(d)
    for i, image in enumerate(images):
      Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
          os.path.join(src, f'{i:05d}.png'))
    # One full batch of each (the timed run's batches have the same shapes).
    warm = sorted(glob.glob(os.path.join(src, '*.png')))[:compression.DECODE_BATCH]
    log('warm-up (compile)')
    _quiet(codec_commands.compress, _args(images=warm, prior=args.prior, output=vqz))
    _quiet(codec_commands.decompress, _args(files=sorted(glob.glob(os.path.join(vqz, '*.vqz'))),
                                       prior=args.prior, output=out))
    snap = CpuSnap()
    t = time.perf_counter()
    compression.load_codec(prior_dir=args.prior)
    load_s = time.perf_counter() - t
    log(f'compress {len(images)} images')
    t = time.perf_counter()
    _quiet(codec_commands.compress, _args(images=[src], prior=args.prior, output=vqz))
    t_enc = time.perf_counter() - t
    files = sorted(glob.glob(os.path.join(vqz, '*.vqz')))
    log(f'decompress {len(files)} files')
    t = time.perf_counter()
    _quiet(codec_commands.decompress, _args(files=files, prior=args.prior, output=out,
                                       save_codes=True))
    t_dec = time.perf_counter() - t
    sizes = [os.path.getsize(f) for f in files]
    decoded = np.stack([np.asarray(Image.open(os.path.join(out, f'{i:05d}.png')))
                        for i in range(len(images))]).reshape(images.shape)
    codes = compression.encode_images(codec, np.stack([compression.pad_image(x)
                                                       for x in images]))
    exact = all(np.array_equal(np.load(os.path.join(out, f'{i:05d}.npy')), codes[i])
                for i in range(len(images)))
  mse = np.mean((decoded.astype(np.float64) - images) ** 2, axis=(1, 2, 3))
  label_search = _label_search(codec, codes[:args.label_check]) if args.label_check else None
  log('the integer prior alone, per layer-0 formulation')
  network = _network(codec, codes)
  other = snap.other_frac()
  result = {
      'compress_imgs_per_s': len(images) / t_enc, 'decompress_imgs_per_s': len(images) / t_dec,
      'model_load_s': load_s, 'images': len(images), 'image_shape': list(images.shape[1:]),
      'bits_per_pixel': 8.0 * sum(sizes) / (len(images) * images.shape[1] * images.shape[2]),
      'mean_file_bytes': float(np.mean(sizes)),
      'psnr_db': float(np.mean(10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12)))),
      'exact': bool(exact), 'label_search': label_search, 'network': network,
      'batch': compression.BATCH, 'decode_batch': compression.DECODE_BATCH, 'prior': args.prior,
      'other_procs_cpu_frac': other, 'malloc_tuned': bool(MALLOC_TUNED),
      'machine': runtime_info()}
  print(json.dumps(result, separators=(',', ':')))


if __name__ == '__main__':
  main()
