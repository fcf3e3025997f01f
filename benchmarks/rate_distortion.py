"""Rate-distortion on a test split: .vqz operating points vs JPEG, WebP, AVIF, PNG.

    python benchmarks/rate_distortion.py --prior runs/fm-k16-prior --prior runs/fm-k64-prior \\
        --prior runs/fm-k512-prior --prior runs/fm-k512-56px-prior
    python benchmarks/rate_distortion.py --dataset atari-boxing --prior runs/boxing-prior
    python benchmarks/rate_distortion.py --dataset atari-boxing      # the baselines alone

Prints ONE JSON line on stdout (the summary; progress goes to stderr), writes
the full results to --json and a PSNR-vs-bpp plot (Pillow) to --plot.

Operating points (ours): one per --prior folder, the VQ-VAE it names and its
integer prior. The test images are compressed for real in batches
(`compression.compress_batch`, method 'prior', the label chosen per image) and
the files decoded again (`compression.decode_files`); `decode_mismatches`
counts files whose decoded codes or image differ from the encoder's. A model
trained at another image size than the benchmark's (e.g. 56x56 Fashion-MNIST
for a 14x14 code grid) gets each test image resized to its size first and
its decoded image resized back (bicubic both ways, `data.resize_all`, as the
data loader resizes); its bits still count per pixel of the test image.

Baselines (Pillow, `rd_codecs`): JPEG (optimize=True), WebP (method=6) and
AVIF (libavif + aom, --avif-speed) over their whole quality range, at full
size and on a half-size copy (box filter) upsampled back (bicubic); for RGB
JPEG and AVIF also with 4:4:4 chroma (their default is 4:2:0). PNG
(optimize=True) is the lossless reference. `avif_bitstream` in the
comparison is AVIF with its HEIF boxes (`container_bytes`, ~270 bytes a file)
taken off: a reference for how much of the gap is AVIF's container.

Measured, per image then averaged over the images:
  bpp   8 * whole file bytes / (H * W) (per pixel, not per channel value),
        headers included: .vqz's header, JFIF markers and tables, RIFF, the
        AVIF (HEIF) boxes.
  psnr  of the decoded uint8 image against the original, peak 255 (dB);
        `psnr_of_mean_mse` is 10 log10(255^2 / mean MSE). A setting that decodes
        some image exactly has no finite mean PSNR: psnr None, off the curves.
A codec's curve is the Pareto front of all its settings (`rd_metrics`); ours is
the front of the operating points. BD-rate (`rd_metrics.bd_rate`, cubic fit;
`bd_rate_pchip` the piecewise cubic) of our curve against each baseline
curve, over the PSNR interval both cover: negative = .vqz needs fewer bits.
It needs >= 4 points on each curve; `bd_rate_reason` says why it is None.
Per operating point, `at_our_points` reads each baseline's rate at our PSNR
(`rd_metrics.rate_at`). The goal (issue 12): >= 4 points spanning >= 6 dB,
and fewer bits than AVIF at equal PSNR at every point of our curve.
"""
from __future__ import annotations

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

# pylint: disable=g-import-not-at-top,wrong-import-position
import argparse
import dataclasses
import json
import sys
import time

import numpy as np
from PIL import features

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import rd_codecs, rd_metrics, rd_plot
from benchmarks.machine import runtime_info
from vqvae_jax import data, fileio, runs
from vqvae_jax.cli.config_files import load_config
from vqvae_jax.codec import compression, vqz
from vqvae_jax.errors import UserError, cli

FAMILIES = rd_codecs.FAMILIES
GOAL_POINTS, GOAL_SPAN_DB = 4, 6.0


def _log(*args):
  print(*args, file=sys.stderr, flush=True)


# --- our operating points ----------------------------------------------------

@dataclasses.dataclass
class Point:
  """One operating point: a prior folder, its VQ-VAE, the codec and the run's config."""
  prior_dir: str
  model_dir: str
  codec: compression.Codec
  config: object  # the VQ-VAE run's ConfigDict
  label: str = ''


def load_point(prior_dir: str) -> Point:
  """The codec of a prior folder (and the VQ-VAE folder it names)."""
  model_dir = runs.restore_prior(prior_dir)[2]['config']['model']
  codec = compression.load_codec(model_dir, prior_dir)
  meta = runs.restore_vqvae(model_dir)[2]
  return Point(prior_dir, model_dir, codec, runs.run_config(meta))


def default_label(point: Point, image_size: int) -> str:
  """'K512 7x7', or 'K512 14x14 @56px' for a model of another image size."""
  size = point.config.image_size
  gh, gw = vqz.grid_shape(size, size)
  return f'K{point.codec.k} {gh}x{gw}' + ('' if size == image_size else f' @{size}px')


def _run_chunks(fn, items, chunk: int) -> list:
  """fn over items [N, ...] in chunks of `chunk`, its per-item results concatenated."""
  return [r for i in range(0, len(items), chunk) for r in fn(items[i:i + chunk])]


def _first_error(results, what: str, label: str):
  for i, r in enumerate(results):
    if isinstance(r, UserError):
      raise UserError(f'{label}: {what} image {i} failed: {r}')


def measure_point(point: Point, images, chunk: int = 500) -> dict:
  """Compresses images [N, H, W, C] to .vqz files, decodes them back and
  measures both: whole-file bpp per test-image pixel, PSNR of the decoded images."""
  codec, size = point.codec, point.config.image_size
  height, width = images.shape[1:3]
  inputs = data.resize_all(images, size)
  start = time.time()
  coded = _run_chunks(lambda x: compression.compress_batch(codec, x, 'prior'), inputs, chunk)
  _first_error(coded, 'compressing', point.label)
  mid = time.time()
  files = [c.data for c in coded]
  decoded = _run_chunks(lambda d: compression.decode_files(codec, d), files, chunk)
  _first_error(decoded, 'decoding', point.label)
  end = time.time()
  recon = np.stack([d[2] for d in decoded])
  mismatches = sum(not (np.array_equal(d[1], c.codes) and np.array_equal(d[2], c.reconstruction))
                   for c, d in zip(coded, decoded))
  sizes = np.array([len(f) for f in files], np.float64)
  payloads = np.array([len(vqz.unpack(f)[1]) for f in files], np.float64)
  fixed = [len(compression.compress_codes(codec, c.codes, (size, size), 'fixed')) for c in coded]
  labels = [c.header.label for c in coded]
  codes = np.stack([c.codes for c in coded])
  return dict(
      label=point.label, prior=point.prior_dir, model=point.model_dir, k=codec.k,
      grid=list(codes.shape[1:]), hidden=point.config.hidden_size, model_image_size=size,
      resampled=size != height or size != width,
      bytes=float(sizes.mean()), bpp=8.0 * float(sizes.mean()) / (height * width),
      header_bytes=float((sizes - payloads).mean()), payload_bytes=float(payloads.mean()),
      fixed_bpp=8.0 * float(np.mean(fixed)) / (height * width),
      codes_used=int(len(np.unique(codes))),
      label_histogram=np.bincount(labels, minlength=len(codec.class_names)).tolist(),
      decode_mismatches=int(mismatches),
      compress_s_per_image=(mid - start) / len(images),
      decode_s_per_image=(end - mid) / len(images),
      **rd_codecs.psnr_stats(images, data.resize_all(recon, height)))


# --- curves and comparison -----------------------------------------------------

def _front(points) -> list:
  """The points with a finite PSNR on the Pareto front, by increasing bpp."""
  ok = [p for p in points if p['psnr'] is not None]
  if not ok:
    return []
  idx = rd_metrics.pareto_front([p['bpp'] for p in ok], [p['psnr'] for p in ok])
  return [ok[i] for i in idx]


def _arrays(front):
  return np.array([p['bpp'] for p in front]), np.array([p['psnr'] for p in front])


def _at_points(front, ours) -> list:
  """Per our point: the baseline's bpp at our PSNR and which needs fewer bits."""
  rates, psnrs = _arrays(front)
  out = []
  for p in ours:
    rate = rd_metrics.rate_at(rates, psnrs, p['psnr'])
    where = ('above_range' if rate is None else
             'below_range' if p['psnr'] < psnrs[0] else 'interpolated')
    out.append({'label': p['label'], 'psnr': p['psnr'], 'ours_bpp': p['bpp'],
                'bpp_at_our_psnr': rate, 'where': where,
                'ours_smaller': bool(rate is None or p['bpp'] < rate),
                'ratio': None if rate is None else rate / p['bpp']})
  return out


def _against(front, ours, name: str) -> dict:
  """BD-rate of our front against one baseline front, and the per-point reading."""
  if not front:
    return dict(front=[], bd_rate=None, bd_rate_pchip=None, overlap_db=None,
                bd_rate_reason='no baseline setting with a finite PSNR', at_our_points=[])
  entry = {'front': [f"{p['variant']} q{p['quality']}" for p in front],
           'psnr_range': [front[0]['psnr'], front[-1]['psnr']],
           'bpp_range': [front[0]['bpp'], front[-1]['bpp']]}
  if not ours:
    return dict(entry, bd_rate=None, bd_rate_pchip=None, overlap_db=None,
                bd_rate_reason='no operating point of ours', at_our_points=[])
  (ra, pa), (rb, pb) = _arrays(front), _arrays(ours)
  reason = rd_metrics.bd_rate_reason(ra, pa, rb, pb, (name, '.vqz'))
  return dict(entry, bd_rate=rd_metrics.bd_rate(ra, pa, rb, pb),
              bd_rate_pchip=rd_metrics.bd_rate(ra, pa, rb, pb, 'pchip'),
              overlap_db=rd_metrics.overlap(pa, pb), bd_rate_reason=reason,
              at_our_points=_at_points(front, ours))


def _goal(ours, avif) -> dict:
  """Issue 12's goal: >= 4 points over >= 6 dB, fewer bits than AVIF at each."""
  span = ours[-1]['psnr'] - ours[0]['psnr'] if ours else 0.0
  larger = [a['label'] for a in avif['at_our_points'] if not a['ours_smaller']]
  out = {'points_on_curve': len(ours), 'psnr_span_db': span, 'avif_smaller_at': larger,
         'bd_rate_avif': avif['bd_rate']}
  if len(ours) < GOAL_POINTS or span < GOAL_SPAN_DB:
    return dict(out, met=None, why=(
        f'{len(ours)} operating point(s) on our curve spanning {span:.2f} dB; the goal needs '
        f'>= {GOAL_POINTS} spanning >= {GOAL_SPAN_DB:g} dB (BD-rate: '
        f"{avif['bd_rate_reason'] or 'defined'})"))
  met = not larger and (avif['bd_rate'] is None or avif['bd_rate'] < 0)
  why = ('smaller than AVIF at every point' if met else
         f"AVIF needs fewer bits at {', '.join(larger) or 'equal PSNR on average'}")
  return dict(out, met=bool(met), why=why)


def compare(points, base) -> dict:
  """Our curve against each baseline family's curve."""
  ours = _front(points)
  on_front = {id(p) for p in ours}
  out = {'ours_front': [p['label'] for p in ours],
         'ours_dominated': [p['label'] for p in points if id(p) not in on_front]}
  for family in FAMILIES:
    out[family] = _against(_front(base[family]), ours, family.upper())
  out['goal'] = _goal(ours, out['avif'])
  # A reference, not the goal: AVIF's AV1 data without its HEIF boxes.
  out['avif_bitstream'] = _against(_front(rd_codecs.without_container(base['avif'])), ours,
                                   'AVIF bitstream')
  return out


# --- command line --------------------------------------------------------------

def reference_images(dataset, points, image_size, num_images) -> np.ndarray:
  """uint8 [N, H, W, C]: the test split the benchmark measures, loaded with the
  first point's run config (else the data set's default config) at image_size;
  UserError if another point's run has another test split."""
  config = (points[0].config if points else load_config(dataset)).copy_and_resolve_references()
  config.image_size = image_size
  images = runs.load_split(config, 'test').images
  images = np.asarray(images[:num_images or len(images)])
  for p in points[1:]:
    other = p.config.copy_and_resolve_references()
    other.image_size = image_size
    if not np.array_equal(runs.load_split(other, 'test').images[:len(images)], images):
      raise UserError(f'{p.prior_dir} was trained on other data than {points[0].prior_dir} '
                      '(its test split differs): benchmark them separately')
  return images


def _labels(points, labels, image_size):
  """Sets each point's label: --label, else `default_label`; repeats get the folder name."""
  if labels and len(labels) != len(points):
    raise UserError(f'{len(labels)} --label for {len(points)} --prior: give one per --prior')
  names = labels or [default_label(p, image_size) for p in points]
  for p, name in zip(points, names):
    p.label = name if names.count(name) == 1 else f'{name} ({os.path.basename(p.prior_dir)})'


def _plain(obj):
  """json.dumps default: NumPy scalars and arrays -> Python."""
  if isinstance(obj, np.generic):
    return obj.item()
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  raise TypeError(f'cannot serialise {type(obj).__name__}')


def run(args) -> dict:
  """The whole benchmark -> the full result dict (also written to args.json)."""
  if not features.check('avif'):
    raise UserError('this Pillow has no AVIF support (pip install "pillow>=11.3")')
  points = [load_point(p) for p in args.prior]
  dataset = data.canonical_name(args.dataset or (points[0].config.dataset if points
                                                  else 'fashion-mnist'))
  for p in points:
    if data.canonical_name(p.config.dataset) != dataset:
      raise UserError(f'{p.prior_dir} is a {p.config.dataset} model, not {dataset}')
  image_size = args.image_size or load_config(dataset).image_size
  _labels(points, args.label, image_size)
  images = reference_images(dataset, points, image_size, args.num_images)
  _log(f'{dataset} test: {len(images)} images {images.shape[1:]}')
  start = time.time()
  ours = []
  for p in points:
    ours.append(measure_point(p, images))
    _log(f"{p.label}: {ours[-1]['bpp']:.4f} bpp, {ours[-1]['psnr']} dB")
  settings = rd_codecs.sweeps(images.shape[-1], args.qualities, args.avif_speed)
  base = rd_codecs.baselines(images, settings)
  result = {'benchmark': 'rate_distortion', 'dataset': dataset, 'split': 'test',
            'num_images': len(images), 'image_shape': list(images.shape[1:]),
            'settings': settings,
            'points': ours, 'baselines': base, 'comparison': compare(ours, base),
            'machine': runtime_info(), 'wall_s': round(time.time() - start, 1)}
  return json.loads(json.dumps(result, default=_plain))


def summary(result) -> dict:
  """The one-line summary of a result."""
  comp = result['comparison']
  return {'benchmark': 'rate_distortion', 'dataset': result['dataset'],
          'num_images': result['num_images'],
          'points': [{k: p[k] for k in ('label', 'bpp', 'psnr', 'decode_mismatches')}
                     for p in result['points']],
          'bd_rate': {f: comp[f]['bd_rate'] for f in FAMILIES},
          'bd_rate_pchip': {f: comp[f]['bd_rate_pchip'] for f in FAMILIES},
          'overlap_db': {f: comp[f]['overlap_db'] for f in FAMILIES},
          'bd_rate_reason': comp['avif']['bd_rate_reason'],
          'bd_rate_avif_bitstream': comp['avif_bitstream']['bd_rate'],
          'avif_bpp_at_our_psnr': {a['label']: a['bpp_at_our_psnr']
                                   for a in comp['avif']['at_our_points']},
          'goal_met': comp['goal']['met'], 'goal_why': comp['goal']['why'],
          'png_bpp': result['baselines']['png']['bpp'], 'wall_s': result['wall_s'],
          'machine': result['machine']}


def _qualities(text: str) -> tuple:
  values = tuple(sorted({int(v) for v in text.split(',') if v.strip()}))
  if not values or values[0] < 0 or values[-1] > 100:
    raise argparse.ArgumentTypeError(f'qualities are integers 0..100, got {text!r}')
  return values


@cli
def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--prior', action='append', default=[],
                      help='a prior folder (names its VQ-VAE): one operating point; repeat')
  parser.add_argument('--label', action='append', default=[],
                      help='a name per --prior (default: from the model, e.g. "K512 7x7")')
  parser.add_argument('--dataset', default=None,
                      help="default: the first prior's; needed without --prior")
  parser.add_argument('--image-size', type=int, default=0,
                      help="test image size (default: the data set's config)")
  parser.add_argument('--num-images', type=int, default=0, help='0: the whole test split')
  parser.add_argument('--qualities', type=_qualities, default=rd_codecs.QUALITIES,
                      help='baseline qualities, comma-separated (default: %(default)s)')
  parser.add_argument('--avif-speed', type=int, default=4, help='libavif speed 0 (slowest)..10')
  parser.add_argument('--json', default=None,
                      help='default benchmarks/results/rate_distortion[_<dataset>].json')
  parser.add_argument('--plot', default=None, help='default: --json with .png')
  args = parser.parse_args(argv)
  result = run(args)
  suffix = '' if result['dataset'] == 'fashion-mnist' else '_' + result['dataset']
  path = args.json or f'benchmarks/results/rate_distortion{suffix}.json'
  plot = args.plot or os.path.splitext(path)[0] + '.png'
  fileio.write_json(path, result)
  rd_plot.plot(result, plot)
  _log(f'wrote {path} and {plot}')
  print(json.dumps(summary(result)))


if __name__ == '__main__':
  main()
