"""Rate-distortion on the Fashion-MNIST test set: the .vqz codec vs JPEG, WebP, PNG.

Prints ONE JSON line on stdout (progress on stderr), writes the full results as
JSON and a rate-distortion plot (PNG, drawn with Pillow).

    python benchmarks/rate_distortion.py --model runs/fashion-mnist \\
        --prior runs/fashion-mnist-prior
    python benchmarks/rate_distortion.py --prior runs/fashion-mnist-prior --num-images 1000

Measured per image, then averaged over the images:
  bpp   whole-file bits per pixel (8 * file bytes / (28 * 28)), headers included:
        the 35-byte .vqz header, JPEG's JFIF markers and tables, WebP's RIFF.
  psnr  of the decoded image against the original, uint8, peak 255 (dB).
Ours: (a) 'fixed' ceil(log2 K) bits per code, (b) 'prior' range-coded with the
prior, the label chosen per image (shortest payload; the true label is not
used). Both decode to the same image, so they share one PSNR. The sizes of (b)
come from one batched pass of the prior (fast); the first --verify images are
also compressed and decompressed by the real codec, which must give the same
codes, and `verified_max_byte_difference` compares the sizes. JPEG (Pillow,
optimize=True) and WebP (Pillow, method=6) sweep their quality setting, at
full size and on a half-size copy upsampled back (bicubic; this reaches lower
rates than quality 0/1 alone); PNG is lossless (optimize=True). `target_met`: to reach our PSNR, JPEG and WebP
need more bits per pixel than (b) (`rate_at`: interpolated along each sweep,
or the smallest measured file with at least our PSNR). `verified`: that many
(b) files were decompressed and gave the same codes.
"""
from __future__ import annotations

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

# pylint: disable=g-import-not-at-top,wrong-import-position
import argparse
import io
import json
import sys
import time

import jax
import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vqvae_jax import codec_format, compression, data, fileio, prior_coding

JPEG_QUALITIES = (1, 3, 5, 10, 20, 30, 50, 70, 90, 95)
WEBP_QUALITIES = (0, 5, 10, 20, 30, 50, 70, 90, 100)


def _log(*args):
  print(*args, file=sys.stderr, flush=True)


def _pillow_codec(images, fmt, half=False, **kwargs):
  """Mean bpp and PSNR of Pillow's `fmt` over images [N, H, W, 1] uint8; `half`
  codes a half-size copy (box filter) and upsamples the decoded one (bicubic)."""
  bits, psnrs = [], []
  for image in images:
    buf = io.BytesIO()
    im = Image.fromarray(image[..., 0])
    size = im.size
    if half:
      im = im.resize(((size[0] + 1) // 2, (size[1] + 1) // 2), Image.Resampling.BOX)
    im.save(buf, format=fmt, **kwargs)
    out = Image.open(io.BytesIO(buf.getvalue())).convert('L')
    if half:
      out = out.resize(size, Image.Resampling.BICUBIC)
    decoded = np.asarray(out)[..., None]
    bits.append(8.0 * buf.tell() / (image.shape[0] * image.shape[1]))
    psnrs.append(compression.psnr(image, decoded))
  psnr = float(np.mean(psnrs)) if np.all(np.isfinite(psnrs)) else None
  return {'bpp': float(np.mean(bits)), 'psnr': psnr}


def baselines(images) -> dict:
  """Quality sweeps of JPEG and WebP at full and half resolution, and PNG."""
  out = {}
  for name, fmt, qualities, kwargs in (('jpeg', 'JPEG', JPEG_QUALITIES, {'optimize': True}),
                                       ('webp', 'WEBP', WEBP_QUALITIES, {'method': 6})):
    for half in (False, True):
      key = name + ('_half' if half else '')
      out[key] = [dict(quality=q, **_pillow_codec(images, fmt, half, quality=q, **kwargs))
                  for q in qualities]
      _log(key, out[key])
  out['png'] = _pillow_codec(images, 'PNG', optimize=True)
  return out


def _prior_sizes(codec, codes, image_size, chunk: int = 32) -> tuple[np.ndarray, np.ndarray]:
  """File bytes and label of method (b) for codes [N, h, w] of image_size (H, W)
  images, fast: the prior's logits of every image under every label from one
  batched full pass (instead of the codec's per-image scan), then the codec's own quantisation, range
  coder and label choice. Equal to the real files' sizes up to the float
  rounding between the two computations of the logits (checked by `ours`)."""
  prior, n_cls = codec.prior, codec.prior.num_classes
  apply = jax.jit(lambda p, c, y: prior.apply({'params': p}, c, y))
  sizes, labels, start = [], [], time.time()
  for i in range(0, len(codes), chunk):
    block = codes[i:i + chunk]
    logits = np.asarray(apply(codec.prior_params, np.repeat(block, n_cls, axis=0),
                              np.tile(np.arange(n_cls, dtype=np.int32), len(block))))
    freqs = prior_coding.frequencies(logits.reshape(len(block), n_cls, -1, logits.shape[-1]))
    for c, f in zip(block, freqs):
      lengths = [len(prior_coding.encode_with_tables(f[y], c)) for y in range(n_cls)]
      labels.append(int(np.argmin(lengths)))
      payload = max(min(lengths), codec_format.min_prior_payload(c.size))
      sizes.append(codec_format.header_size(*image_size, labels[-1]) + payload)
    if (i // chunk) % 20 == 0:
      _log(f'prior: {i + len(block)}/{len(codes)} images, {time.time() - start:.0f} s')
  return np.array(sizes), np.array(labels)


def ours(codec, images, verify: int, batch_size: int = 256) -> dict:
  """Both methods over every image; the first `verify` images also through the
  real codec (prior method): decoded back, and their sizes compared."""
  pixels = images.shape[1] * images.shape[2]
  padded = np.stack([compression.pad_image(x) for x in images])
  codes = np.concatenate([compression.encode_images(codec, padded[i:i + batch_size])
                          for i in range(0, len(padded), batch_size)])
  recon = np.concatenate([compression.decode_codes(codec, codes[i:i + batch_size])
                          for i in range(0, len(codes), batch_size)])
  recon = recon[:, :images.shape[1], :images.shape[2]]
  psnr = float(np.mean([compression.psnr(a, b) for a, b in zip(images, recon)]))
  size = images.shape[1:3]
  fixed = [len(compression.compress_codes(codec, c, size, 'fixed')) for c in codes]
  out = {'psnr': psnr, 'codes_used': int(len(np.unique(codes))),
         'fixed': {'bpp': 8.0 * np.mean(fixed) / pixels, 'psnr': psnr,
                   'bytes': float(np.mean(fixed))}}
  if codec.prior is None:
    return out
  sizes, labels = _prior_sizes(codec, codes, size)
  real, start = [], time.time()
  for c in codes[:verify]:
    blob = compression.compress_codes(codec, c, size, 'prior')
    np.testing.assert_array_equal(compression.read_codes(codec, blob)[1], c)
    real.append(len(blob))
  out['prior'] = {'bpp': 8.0 * np.mean(sizes) / pixels, 'psnr': psnr,
                  'bytes': float(np.mean(sizes)),
                  'payload_bytes': float(np.mean(sizes)) - codec_format.header_size(
                      *size, 0),
                  'label_histogram': np.bincount(labels, minlength=len(codec.class_names)).tolist(),
                  'verified_files': len(real),
                  'verified_max_byte_difference': int(np.max(np.abs(
                      np.array(real) - sizes[:len(real)]))) if real else None,
                  'real_codec_s_per_image': (time.time() - start) / max(len(real), 1)}
  return out


def bpp_at(curve, psnr):
  """Linear interpolation of a (bpp, psnr) sweep at `psnr`; None outside its range."""
  points = sorted((p['psnr'], p['bpp']) for p in curve)
  ps, bs = [p for p, _ in points], [b for _, b in points]
  if not ps[0] <= psnr <= ps[-1]:
    return None
  return float(np.interp(psnr, ps, bs))


def rate_at(curves, psnr):
  """The smallest rate at which a format reaches `psnr` dB: the minimum over its
  sweeps of the interpolated rate at `psnr` and of the rates of points with a
  PSNR of at least `psnr` (which covers the gap between sweeps). None if no
  point reaches `psnr`."""
  rates = [bpp_at(c, psnr) for c in curves]
  rates += [p['bpp'] for c in curves for p in c if p['psnr'] >= psnr]
  rates = [r for r in rates if r is not None]
  return min(rates) if rates else None


def compare(result) -> dict:
  """Our (b) (or (a)) bpp against JPEG / WebP at the same PSNR (`rate_at` over
  the full-size and half-size sweeps). `ours_smaller` is True when the format
  needs more bits per pixel to reach our PSNR, or cannot reach it at all."""
  ours_bpp = result['ours'].get('prior', result['ours']['fixed'])['bpp']
  psnr, out = result['ours']['psnr'], {'ours_bpp': ours_bpp}
  for name in ('jpeg', 'webp'):
    rate = rate_at([result[name], result[name + '_half']], psnr)
    out[name] = {'bpp_at_our_psnr': rate, 'ours_smaller': bool(rate is None or ours_bpp < rate),
                 'ratio': None if rate is None else rate / ours_bpp}
  out['target_met'] = bool(out['jpeg']['ours_smaller'] and out['webp']['ours_smaller'])
  return out


def plot(result, path, width=900, height=560):
  """bpp (x) vs PSNR (y): JPEG and WebP sweeps, our two points."""
  im = Image.new('RGB', (width, height), 'white')
  d = ImageDraw.Draw(im)
  left, right, top, bottom = 70, width - 230, 30, height - 60
  curves = ('jpeg', 'webp', 'jpeg_half', 'webp_half')
  pts = [(p['bpp'], p['psnr']) for n in curves for p in result[n]]
  pts += [(v['bpp'], v['psnr']) for k, v in result['ours'].items() if k in ('fixed', 'prior')]
  xmax = max(x for x, _ in pts) * 1.05
  ymin, ymax = min(y for _, y in pts) - 1, max(y for _, y in pts) + 1

  def xy(x, y):
    return (left + (right - left) * x / xmax, bottom - (bottom - top) * (y - ymin) / (ymax - ymin))

  d.rectangle([left, top, right, bottom], outline='black')
  for i in range(6):
    x, y = xmax * i / 5, ymin + (ymax - ymin) * i / 5
    d.text((xy(x, ymin)[0] - 10, bottom + 6), f'{x:.1f}', fill='black')
    d.text((left - 40, xy(0, y)[1] - 6), f'{y:.1f}', fill='black')
  d.text(((left + right) // 2 - 80, bottom + 30), 'bits per pixel (whole file)', fill='black')
  d.text((5, top - 22), 'PSNR (dB)', fill='black')
  styles = {'jpeg': (200, 60, 40), 'webp': (40, 120, 200), 'jpeg_half': (240, 160, 140),
            'webp_half': (150, 190, 240), 'fixed': (120, 120, 120), 'prior': (20, 150, 60)}
  for name in curves:
    line = [xy(p['bpp'], p['psnr']) for p in sorted(result[name], key=lambda p: p['bpp'])]
    d.line(line, fill=styles[name], width=2)
    for x, y in line:
      d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=styles[name])
  for name in ('fixed', 'prior'):
    if name in result['ours']:
      x, y = xy(result['ours'][name]['bpp'], result['ours'][name]['psnr'])
      d.rectangle([x - 5, y - 5, x + 5, y + 5], fill=styles[name])
  legend = [('jpeg', 'JPEG (quality sweep)'), ('webp', 'WebP (quality sweep)'),
            ('jpeg_half', 'JPEG, half size + bicubic'), ('webp_half', 'WebP, half size + bicubic'),
            ('fixed', 'VQ-VAE, (a) fixed-length'), ('prior', 'VQ-VAE, (b) prior + range coder')]
  for i, (name, text) in enumerate(legend):
    d.rectangle([right + 15, top + 20 * i + 4, right + 25, top + 20 * i + 14], fill=styles[name])
    d.text((right + 30, top + 20 * i + 3), text, fill='black')
  d.text((right + 15, top + 140), f"PNG (lossless): {result['png']['bpp']:.2f} bpp", fill='black')
  buf = io.BytesIO()
  im.save(buf, format='PNG')
  fileio.atomic_write(path, buf.getvalue())


def _plain(obj):
  """json.dumps default: NumPy scalars and arrays -> Python."""
  if isinstance(obj, np.generic):
    return obj.item()
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  raise TypeError(f'cannot serialise {type(obj).__name__}')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', default=None, help='VQ-VAE folder (default: the prior\'s)')
  parser.add_argument('--prior', default=None, help='prior folder (needed for (b))')
  parser.add_argument('--dataset', default='fashion-mnist')
  parser.add_argument('--num-images', type=int, default=0, help='0: the whole test set')
  parser.add_argument('--verify', type=int, default=100,
                      help='images also run through the real codec (b) and decoded back')
  parser.add_argument('--json', default='benchmarks/results/rate_distortion.json')
  parser.add_argument('--plot', default='benchmarks/results/rate_distortion.png')
  args = parser.parse_args(argv)
  start = time.time()
  codec = compression.load_codec(args.model, args.prior)
  ds = data.load(args.dataset, 'test')
  images = ds.images[:args.num_images or len(ds.images)]
  result = {'dataset': args.dataset, 'split': 'test', 'num_images': len(images),
            'model': args.model, 'prior': args.prior, 'k': codec.k}
  result.update(baselines(images))
  result['ours'] = ours(codec, images, args.verify)
  result['comparison'] = compare(result)
  result['wall_s'] = round(time.time() - start, 1)
  result = json.loads(json.dumps(result, default=_plain))
  fileio.write_json(args.json, result)
  plot(result, args.plot)
  _log(f'wrote {args.json} and {args.plot}')
  print(json.dumps({'num_images': len(images), 'psnr': result['ours']['psnr'],
                    'fixed_bpp': result['ours']['fixed']['bpp'],
                    'prior_bpp': result['ours'].get('prior', {}).get('bpp'),
                    'jpeg_bpp_at_psnr': result['comparison']['jpeg']['bpp_at_our_psnr'],
                    'webp_bpp_at_psnr': result['comparison']['webp']['bpp_at_our_psnr'],
                    'target_met': result['comparison']['target_met']}))


if __name__ == '__main__':
  main()
