"""The rate-distortion plot of benchmarks/rate_distortion.py, drawn with Pillow.

PSNR (dB, y) against whole-file bits per pixel (x, log2 scale): per codec
family every measured setting as a small pale dot and its Pareto front as a
line; our operating points as labelled squares joined along our front.
"""
from __future__ import annotations

import io
import math

from PIL import Image, ImageDraw

from vqvae_jax import fileio

COLOURS = {'jpeg': (200, 60, 40), 'webp': (40, 110, 200), 'avif': (150, 60, 170),
           'ours': (20, 150, 60)}
NAMES = {'jpeg': 'JPEG (full, half size)', 'webp': 'WebP (full, half size)',
         'avif': 'AVIF (full, half size)', 'ours': '.vqz (VQ-VAE + prior)'}


def _pale(rgb, amount=0.6):
  return tuple(int(c + (255 - c) * amount) for c in rgb)


def _limits(result):
  """(log2 bpp lo, hi, PSNR lo, hi) covering every finite point."""
  pts = [(p['bpp'], p['psnr']) for f in ('jpeg', 'webp', 'avif') for p in result['baselines'][f]]
  pts += [(p['bpp'], p['psnr']) for p in result['points']]
  pts = [(b, q) for b, q in pts if q is not None and b > 0]
  xs, ys = [math.log2(b) for b, _ in pts], [q for _, q in pts]
  return (math.floor(min(xs)), math.ceil(max(xs)),
          5 * math.floor(min(ys) / 5), 5 * math.ceil(max(ys) / 5))


class _Axes:
  """Maps (bpp, PSNR) to pixels inside the box (left, top, right, bottom)."""

  def __init__(self, box, limits):
    self.box, self.limits = box, limits

  def __call__(self, bpp, psnr):
    left, top, right, bottom = self.box
    x0, x1, y0, y1 = self.limits
    fx = (math.log2(bpp) - x0) / max(x1 - x0, 1e-9)
    fy = (psnr - y0) / max(y1 - y0, 1e-9)
    return left + (right - left) * fx, bottom - (bottom - top) * fy


def _frame(d, ax):
  left, top, right, bottom = ax.box
  x0, x1, y0, y1 = ax.limits
  d.rectangle([left, top, right, bottom], outline='black')
  for e in range(x0, x1 + 1):
    x, _ = ax(2.0 ** e, y0)
    d.line([x, bottom, x, bottom + 4], fill='black')
    d.text((x - 12, bottom + 8), f'{2.0 ** e:g}', fill='black')
  for y in range(y0, y1 + 1, 5):
    _, py = ax(2.0 ** x0, y)
    d.line([left - 4, py, left, py], fill='black')
    d.text((left - 30, py - 6), f'{y}', fill='black')
  d.text(((left + right) // 2 - 110, bottom + 28), 'bits per pixel (whole file, log scale)',
         fill='black')
  d.text((8, top - 24), 'PSNR (dB)', fill='black')


def _square(d, x, y, r, fill):
  d.rectangle([x - r, y - r, x + r, y + r], fill=fill)


def _draw_family(d, ax, points, front_labels, colour):
  """Pale dots for every setting, a line with dots along the front."""
  finite = [p for p in points if p['psnr'] is not None]
  for p in finite:
    x, y = ax(p['bpp'], p['psnr'])
    d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=_pale(colour))
  front = [p for p in finite if f"{p['variant']} q{p['quality']}" in front_labels]
  line = [ax(p['bpp'], p['psnr']) for p in sorted(front, key=lambda p: p['bpp'])]
  if len(line) > 1:
    d.line(line, fill=colour, width=2)
  for x, y in line:
    d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)


def _draw_ours(d, ax, result):
  comp, colour = result['comparison'], COLOURS['ours']
  by_label = {p['label']: p for p in result['points'] if p['psnr'] is not None}
  line = [ax(by_label[n]['bpp'], by_label[n]['psnr']) for n in comp['ours_front']]
  if len(line) > 1:
    d.line(line, fill=colour, width=3)
  for name, p in by_label.items():
    x, y = ax(p['bpp'], p['psnr'])
    _square(d, x, y, 5, colour if name in comp['ours_front'] else _pale(colour))
    d.text((x + 8, y - 14), name, fill=colour)


def _legend(d, x, y, result):
  for i, name in enumerate(('ours',) + ('jpeg', 'webp', 'avif')):
    _square(d, x + 5, y + 20 * i + 8, 5, COLOURS[name])
    d.text((x + 16, y + 20 * i + 2), NAMES[name], fill='black')
  y += 90
  notes = ['lines: Pareto fronts', 'pale dots: every setting',
           f"PNG (lossless): {result['baselines']['png']['bpp']:.2f} bpp"]
  goal = result['comparison']['goal']
  for f in ('jpeg', 'webp', 'avif'):
    bd = result['comparison'][f]['bd_rate']
    notes.append(f'BD-rate vs {f.upper()}: ' + ('n/a' if bd is None else f'{bd:+.1f}%'))
  notes.append('goal (< AVIF): ' + {None: 'not judged', True: 'met', False: 'not met'}[goal['met']])
  for i, text in enumerate(notes):
    d.text((x, y + 18 * i), text, fill='black')


def plot(result, path, width=980, height=600):
  """Writes the plot of a rate_distortion result to `path` (PNG)."""
  im = Image.new('RGB', (width, height), 'white')
  d = ImageDraw.Draw(im)
  ax = _Axes((70, 40, width - 270, height - 60), _limits(result))
  _frame(d, ax)
  d.text((70, 12), f"{result['dataset']} test, {result['num_images']} images", fill='black')
  for f in ('jpeg', 'webp', 'avif'):
    _draw_family(d, ax, result['baselines'][f], set(result['comparison'][f]['front']),
                 COLOURS[f])
  _draw_ours(d, ax, result)
  _legend(d, width - 250, 40, result)
  buf = io.BytesIO()
  im.save(buf, format='PNG')
  fileio.atomic_write(path, buf.getvalue())
