"""The baseline image codecs of benchmarks/rate_distortion.py (Pillow) and the
PSNR statistics every codec, ours included, is measured with.

Every baseline file is a whole file as Pillow writes it: JPEG with its JFIF
markers and Huffman tables (optimize=True), WebP in its RIFF container
(method=6), AVIF in its HEIF boxes (libavif; ftyp + meta are ~270 bytes,
recorded as `container_bytes`). 'half' settings code a half-size copy (box
filter) and upsample the decoded image back (bicubic), which reaches lower
rates than the lowest quality alone.
"""
from __future__ import annotations

import io
import math
import struct
import sys
import time

import numpy as np
from PIL import Image

QUALITIES = (0, 2, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)
FAMILIES = ('jpeg', 'webp', 'avif')


def psnr_stats(originals, decoded) -> dict:
  """uint8 [N, H, W, C] twice -> mean per-image PSNR in dB, peak 255 (None if
  any image is decoded exactly: no finite mean), PSNR of the mean MSE (None if
  every image is exact), and the number of exactly decoded images."""
  diff = np.asarray(originals, np.float64) - np.asarray(decoded, np.float64)
  mse = np.mean(np.square(diff).reshape(len(diff), -1), axis=1)
  exact = int(np.sum(mse == 0))
  per_image = 10.0 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-300))
  mean_mse = float(np.mean(mse))
  return {'psnr': None if exact else float(np.mean(per_image)),
          'psnr_of_mean_mse': None if mean_mse == 0 else 10.0 * math.log10(255.0 ** 2 / mean_mse),
          'exact_images': exact}


def sweeps(channels: int, qualities=QUALITIES, avif_speed: int = 4) -> list[dict]:
  """The baseline settings: [{family, variant, format, half, qualities, kwargs}].

  Each family at full and half size; for RGB (channels 3) JPEG and AVIF also
  with 4:4:4 chroma (their default 4:2:0 caps the PSNR of saturated colours).
  """
  jpeg_q = sorted({max(1, q) for q in qualities})  # libjpeg's quality starts at 1
  chroma = ('', '4:4:4') if channels == 3 else ('',)
  out = []
  for half in (False, True):
    size = 'half' if half else 'full'
    for sub in chroma:
      extra = {'subsampling': sub} if sub else {}
      variant = f'{size} {sub}'.strip()
      out += [dict(family='jpeg', variant=variant, format='JPEG', half=half, qualities=jpeg_q,
                   kwargs=dict(optimize=True, **extra)),
              dict(family='avif', variant=variant, format='AVIF', half=half,
                   qualities=list(qualities), kwargs=dict(speed=avif_speed, **extra))]
    out.append(dict(family='webp', variant=size, format='WEBP', half=half,
                    qualities=list(qualities), kwargs={'method': 6}))
  return out


def container_bytes(data: bytes) -> int:
  """Bytes of an ISO BMFF (HEIF / AVIF) file outside the mdat payload: every
  top-level box but mdat, plus mdat's own 8-byte header."""
  i, payload = 0, 0
  while i + 8 <= len(data):
    size, kind = struct.unpack('>I4s', data[i:i + 8])
    if size < 8:  # 0 (to the end) or 1 (64-bit size): not written by libavif for tiny images
      raise ValueError(f'unsupported box size {size} at byte {i}')
    if kind == b'mdat':
      payload += size - 8
    i += size
  return len(data) - payload


def roundtrip(image: np.ndarray, fmt: str, half: bool = False,
              **kwargs) -> tuple[bytes, np.ndarray]:
  """[H, W, C] uint8 -> (file bytes, decoded [H, W, C] uint8) through Pillow."""
  im = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  size = im.size
  if half:
    im = im.resize(((size[0] + 1) // 2, (size[1] + 1) // 2), Image.Resampling.BOX)
  buf = io.BytesIO()
  im.save(buf, format=fmt, **kwargs)
  with Image.open(io.BytesIO(buf.getvalue())) as out:
    out = out.convert('L' if image.shape[-1] == 1 else 'RGB')
  if half:
    out = out.resize(size, Image.Resampling.BICUBIC)
  decoded = np.asarray(out)
  return buf.getvalue(), decoded[..., None] if decoded.ndim == 2 else decoded


def pillow_point(images, fmt: str, half: bool = False, **kwargs) -> dict:
  """Mean file bytes, bpp (8 * bytes / (H * W)) and `psnr_stats` of one
  Pillow setting over images [N, H, W, C] uint8."""
  start = time.time()
  files, decoded = zip(*(roundtrip(x, fmt, half, **kwargs) for x in images))
  sizes = np.array([len(f) for f in files], np.float64)
  pixels = images.shape[1] * images.shape[2]
  out = dict(bytes=float(sizes.mean()), bpp=8.0 * float(sizes.mean()) / pixels,
             s_per_image=(time.time() - start) / len(images),
             **psnr_stats(images, np.stack(decoded)))
  if fmt == 'AVIF':
    out['container_bytes'] = float(np.mean([container_bytes(f) for f in files]))
  return out


def baselines(images, settings) -> dict:
  """{family: [point per (variant, quality)]} for `sweeps(...)`, and 'png'."""
  out = {f: [] for f in FAMILIES}
  for s in settings:
    start = time.time()
    for q in s['qualities']:
      point = pillow_point(images, s['format'], s['half'], quality=q, **s['kwargs'])
      out[s['family']].append(dict(variant=s['variant'], quality=q, **point))
    print(f"{s['family']} {s['variant']}: {len(s['qualities'])} qualities, "
          f'{time.time() - start:.0f} s', file=sys.stderr, flush=True)
  out['png'] = pillow_point(images, 'PNG', optimize=True)
  return out


def without_container(points) -> list[dict]:
  """AVIF points with their container bytes taken off (the AV1 data alone): a
  reference for how much of AVIF's rate is its HEIF boxes."""
  out = []
  for p in points:
    scale = (p['bytes'] - p['container_bytes']) / p['bytes']
    out.append(dict(p, bytes=p['bytes'] * scale, bpp=p['bpp'] * scale))
  return out
