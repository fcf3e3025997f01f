"""Measured quality of a trained VQ-VAE (and of its prior) on one data split.

Reconstruction: MSE with images in [-1, 1] (the training loss's scale) and in
[0, 1]; PSNR = 10 log10(1 / MSE_[0,1]) per image; SSIM (Wang, Bovik, Sheikh and
Simoncelli, "Image quality assessment: from error visibility to structural
similarity", IEEE TIP 2004) with an 11x11 Gaussian window (sigma 1.5),
K1 = 0.01, K2 = 0.03, images in [0, 1], averaged over the positions where the
window fits inside the image and over channels: scikit-image's
`structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)`. PSNR and SSIM are means over
images of the per-image values; reconstructions are not rounded to 8 bits.

Codebook: perplexity exp(H(p)) of the code frequencies over the split and the
fraction (and number) of the K codes used at least once.

Prior (optional): NLL of the split's code grids given their labels, in bits
per code and in bits per image dimension (see `vqvae_jax.models.prior.bits_per_dim`
for what that number is and is not), and the class consistency of its samples:
`per_class` samples of each class at temperature 1, keys from the prior's seed,
labelled by a classifier of the real training split (`vqvae_jax.classifier`).
"""
from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vqvae_jax import classifier, data, runs
from vqvae_jax.errors import UserError
from vqvae_jax.models import prior as prior_lib, quantizer, sampling
from vqvae_jax.models.vqvae import to_float

CONSISTENCY_PER_CLASS = 100
_CONSISTENCY_STREAM = 3  # fold_in(key(prior seed), this): the samples' key
_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5: an 11x11 window
PSNR_MSE_FLOOR = 1e-20  # identical images: PSNR 200 dB + 20 log10(data range)


def gaussian_window(sigma: float = _SSIM_SIGMA, truncate: float = _SSIM_TRUNCATE) -> np.ndarray:
  """Normalised 1-D Gaussian [2r + 1], r = int(truncate * sigma + 0.5)."""
  r = int(truncate * sigma + 0.5)
  x = np.arange(-r, r + 1, dtype=np.float64)
  w = np.exp(-0.5 * (x / sigma) ** 2)
  return (w / w.sum()).astype(np.float32)


def _blur_valid(x, window):
  """x [N, H, W] -> [N, H - 2r, W - 2r], separable filtering, valid positions only."""
  n = window.shape[0]
  x = x[..., None]
  dn = ('NHWC', 'HWIO', 'NHWC')
  prec = lax.Precision.HIGHEST
  x = lax.conv_general_dilated(x, window.reshape(n, 1, 1, 1), (1, 1), 'VALID',
                               dimension_numbers=dn, precision=prec)
  x = lax.conv_general_dilated(x, window.reshape(1, n, 1, 1), (1, 1), 'VALID',
                               dimension_numbers=dn, precision=prec)
  return x[..., 0]


def ssim(x, y, *, data_range: float = 1.0, k1: float = 0.01, k2: float = 0.03):
  """Mean structural similarity per image.

  Args:
    x, y: [B, H, W, C] float images with values in [0, data_range]; H and W at
      least 11 (the window).
    data_range: the dynamic range L (C1 = (k1 L)^2, C2 = (k2 L)^2).
  Returns:
    [B] float32 SSIM, 1 for identical images.
  """
  x = jnp.asarray(x, jnp.float32)
  y = jnp.asarray(y, jnp.float32)
  if x.shape != y.shape or x.ndim != 4:
    raise ValueError(f'need two [B, H, W, C] arrays of one shape, got {x.shape} and {y.shape}')
  window = jnp.asarray(gaussian_window())
  if min(x.shape[1:3]) < window.shape[0]:
    raise ValueError(f'SSIM needs images of at least {window.shape[0]} pixels a side, '
                     f'got {x.shape[1:3]}')
  b, h, w, c = x.shape
  # Channels become images: [B, H, W, C] -> [B * C, H, W].
  x = jnp.moveaxis(x, -1, 1).reshape(b * c, h, w)
  y = jnp.moveaxis(y, -1, 1).reshape(b * c, h, w)
  mx, my = _blur_valid(x, window), _blur_valid(y, window)
  vx = _blur_valid(x * x, window) - mx * mx
  vy = _blur_valid(y * y, window) - my * my
  cxy = _blur_valid(x * y, window) - mx * my
  c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
  s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
  return jnp.mean(s.reshape(b, c, -1), axis=(1, 2))


def psnr_from_mse(mse, data_range: float = 1.0):
  """Peak signal-to-noise ratio (dB) of a mean squared error (any shape), the
  error floored at PSNR_MSE_FLOOR: 10 log10(data_range^2 / mse)."""
  return 10.0 * jnp.log10(data_range ** 2 / jnp.maximum(mse, PSNR_MSE_FLOOR))


def psnr(x, y, *, data_range: float = 1.0):
  """Peak signal-to-noise ratio per image: x, y [B, ...] -> [B] float32 dB."""
  x = jnp.asarray(x, jnp.float32)
  y = jnp.asarray(y, jnp.float32)
  mse = jnp.mean(jnp.square(x - y).reshape(x.shape[0], -1), axis=1)
  return psnr_from_mse(mse, data_range)


def _batch_metrics(model, variables, images):
  """uint8 images [b, H, W, C] -> per-image metrics [b] and codes [b, h, w]."""
  x = to_float(images)
  out = model.apply(variables, x)
  x01, y01 = (x + 1.0) / 2.0, (out.x_tilde + 1.0) / 2.0
  per = {'mse': jnp.mean(jnp.square(out.x_tilde - x), axis=(1, 2, 3)),
         'mse01': jnp.mean(jnp.square(y01 - x01), axis=(1, 2, 3)),
         'psnr': psnr(x01, y01)}
  if min(x.shape[1:3]) >= gaussian_window().shape[0]:  # SSIM's 11x11 window must fit
    per['ssim'] = ssim(x01, y01)
  return per, out.indices


def encode_split(model, variables, ds, batch_size: int = 256) -> np.ndarray:
  """Codes of every image of `ds`: [N, H/4, W/4] int32 (`VQVAE.encode`, eval mode).

  The codes `reconstruction_metrics` returns, without decoding or metrics."""
  encode = jax.jit(lambda v, x: model.apply(v, to_float(x), method=type(model).encode))
  out = []
  for images, _, mask in data.eval_batches(ds, batch_size):
    out.append(np.asarray(encode(variables, images))[mask])
  return np.concatenate(out).astype(np.int32)


def reconstruction_metrics(model, variables, ds, batch_size: int = 256):
  """Means over `ds` of the per-image metrics, the code counts and every code grid.

  Returns:
    (metrics dict, codes [N, h, w] int32) in eval mode (running BatchNorm
    statistics); codes equal `VQVAE.encode` of the images.
  """
  step = jax.jit(lambda v, x: _batch_metrics(model, v, x))
  sums, counts, codes = None, np.zeros((model.k,), np.int64), []
  for images, _, mask in data.eval_batches(ds, batch_size):
    per, idx = jax.device_get(step(variables, images))
    w = mask.astype(np.float64)
    batch = {k: float(np.sum(np.asarray(v, np.float64) * w)) for k, v in per.items()}
    sums = batch if sums is None else {k: sums[k] + batch[k] for k in sums}
    idx = np.asarray(idx)[mask]
    counts += np.bincount(idx.reshape(-1), minlength=model.k)
    codes.append(idx)
  n = len(ds)
  metrics = {'ssim': None}  # stays None for images under 11 pixels a side
  metrics.update({k: v / n for k, v in sums.items()})
  metrics.update(quantizer.usage_stats(counts))
  metrics['codes_used'] = int(np.sum(counts > 0))
  return metrics, np.concatenate(codes).astype(np.int32)


def prior_nll(prior_dir: str, codes, labels, vq_variables, image_shape, batch_size: int = 256,
              model_dir: str = 'the one evaluated'):
  """Test NLL of code grids under the prior in `prior_dir`: bits per code and per dim."""
  model, params, meta = runs.restore_prior(prior_dir)
  runs.check_prior_matches(meta, vq_variables, prior_dir, model_dir)
  if tuple(meta['grid']) != tuple(codes.shape[1:]):
    raise UserError(f'the prior models {tuple(meta["grid"])} code grids, the VQ-VAE gives '
                    f'{tuple(codes.shape[1:])}')
  bits_fn = jax.jit(lambda p, c, l: prior_lib.nll_bits(model.apply({'params': p}, c, l), c))
  total = 0.0
  for start in range(0, len(codes), batch_size):
    c = codes[start:start + batch_size]
    l = np.asarray(labels[start:start + batch_size], np.int32)
    pad = batch_size - len(c)  # one compiled shape: pad the last batch
    if pad:
      c = np.concatenate([c, np.zeros((pad,) + c.shape[1:], c.dtype)])
      l = np.concatenate([l, np.zeros((pad,), np.int32)])
    bits = np.asarray(bits_fn(params, c, l), np.float64)
    total += float(np.sum(bits[:batch_size - pad]))
  per_image = total / len(codes)
  cells = math.prod(codes.shape[1:])
  unigram = unigram_entropy_bits(codes, model.num_codes)
  return {'dir': os.path.abspath(prior_dir), 'step': int(meta['step']),
          'bits_per_code': per_image / cells,
          'bits_per_dim': float(prior_lib.bits_per_dim(per_image, image_shape)),
          'unigram_bits_per_code': unigram,
          'unigram_bits_per_dim': float(prior_lib.bits_per_dim(unigram * cells, image_shape))}


def unigram_entropy_bits(codes, k: int) -> float:
  """Entropy (bits) of the codes' own frequencies: what a model that knows
  only how often each of the K codes occurs in `codes` pays per code."""
  p = np.bincount(np.asarray(codes).reshape(-1), minlength=k) / np.asarray(codes).size
  p = p[p > 0]
  return float(-np.sum(p * np.log2(p)))


def class_consistency(prior_dir: str, vq_model, vq_variables, config, class_names,
                      per_class: int = CONSISTENCY_PER_CLASS) -> dict:
  """Class consistency of the prior's samples (see `vqvae_jax.classifier`).

  Draws `per_class` samples of every class at temperature 1 with the key
  fold_in(key(prior seed), 3) and classifies them. Returns {'value': fraction
  labelled as their class, or None, 'reason' (why None), 'per_class': {name:
  fraction}, 'samples_per_class', 'temperature', 'classifier_test_accuracy',
  'classifier'}: the cache folder.
  """
  out = {'value': None, 'reason': None, 'samples_per_class': per_class, 'temperature': 1.0}
  try:
    trained = classifier.get(config, class_names)
  except UserError as e:
    return dict(out, reason=str(e))
  prior, params, meta = runs.restore_prior(prior_dir)
  key = jax.random.fold_in(jax.random.key(int(meta['config']['seed'])), _CONSISTENCY_STREAM)
  images, labels = sampling.sample_images(prior, params, vq_model, vq_variables,
                                          len(class_names), per_class, meta['grid'], key, 1.0)
  return dict(out, value=classifier.consistency(trained, images, labels),
              per_class=classifier.per_class(trained, images, labels, class_names),
              classifier_test_accuracy=trained.test_accuracy, classifier=trained.folder)


def evaluate(model_dir: str, *, split: str = 'test', prior_dir: str | None = None,
             which: str = 'best', batch_size: int = 256, data_folder: str | None = None,
             consistency_per_class: int = CONSISTENCY_PER_CLASS) -> dict:
  """Evaluates the VQ-VAE in `model_dir` (and optionally its prior) on `split`.

  Returns a JSON-able dict: split, n, model, step, config (the codebook
  settings), mse, mse01, psnr, ssim (None for images under 11 pixels a side),
  perplexity, usage, codes_used, k, prior (None, or dir, step,
  bits_per_code, bits_per_dim) and class_consistency (None without a prior or
  with consistency_per_class 0, else `class_consistency`'s dict).
  """
  if batch_size < 1:
    raise UserError(f'batch size must be positive, got {batch_size}')
  model, variables, meta = runs.restore_vqvae(model_dir, which=which)
  ds = runs.load_split(runs.run_config(meta, data_folder), split)
  return evaluate_restored(model, variables, meta, ds, model_dir=model_dir, prior_dir=prior_dir,
                           batch_size=batch_size, data_folder=data_folder,
                           consistency_per_class=consistency_per_class)


def evaluate_restored(model, variables, meta, ds, *, model_dir: str,
                      prior_dir: str | None = None, batch_size: int = 256,
                      data_folder: str | None = None,
                      consistency_per_class: int = CONSISTENCY_PER_CLASS) -> dict:
  """`evaluate` of a VQ-VAE restored already (`runs.restore_vqvae(model_dir)`)
  on the split `ds` of its data set (`runs.load_split`)."""
  config = runs.run_config(meta, data_folder)
  metrics, codes = reconstruction_metrics(model, variables, ds, batch_size)
  keys = ('dataset', 'hidden_size', 'k', 'batch_size', 'lr', 'beta', 'codebook', 'ema_decay',
          'restart_after', 'codebook_init', 'lr_schedule', 'warmup_steps', 'final_lr_fraction',
          'grad_clip', 'weight_decay', 'max_steps')
  result = {'split': ds.split, 'n': len(ds), 'model': os.path.abspath(model_dir),
            'step': int(meta['step']), 'config': {k: config.get(k) for k in keys}, 'k': model.k}
  result.update(metrics)
  result['prior'] = result['class_consistency'] = None
  if prior_dir:
    labels = data.relabel(ds, meta['class_names'])
    result['prior'] = prior_nll(prior_dir, codes, labels, variables,
                                tuple(meta['image_shape']), batch_size, model_dir=model_dir)
    if consistency_per_class > 0:
      result['class_consistency'] = class_consistency(
          prior_dir, model, variables, config, meta['class_names'], consistency_per_class)
  return result


def format_table(result: dict) -> str:
  """A readable two-column table of `evaluate`'s result."""
  rows = [('images', f'{result["n"]} ({result["split"]})'),
          ('checkpoint step', str(result['step'])),
          ('MSE, images in [-1, 1]', f'{result["mse"]:.5f}'),
          ('MSE, images in [0, 1]', f'{result["mse01"]:.5f}'),
          ('PSNR (dB)', f'{result["psnr"]:.2f}'),
          ('SSIM', 'n/a (images under 11 pixels a side)' if result['ssim'] is None
           else f'{result["ssim"]:.4f}'),
          ('codebook perplexity', f'{result["perplexity"]:.1f}'),
          ('codes used', f'{result["codes_used"]} / {result["k"]} ({100 * result["usage"]:.1f}%)')]
  if result.get('prior'):
    rows += [('prior NLL (bits/code)', f'{result["prior"]["bits_per_code"]:.4f}'),
             ('prior NLL (bits/dim)', f'{result["prior"]["bits_per_dim"]:.4f}')]
    if 'unigram_bits_per_code' in result['prior']:
      rows.append(('unigram entropy (bits/code)',
                   f'{result["prior"]["unigram_bits_per_code"]:.4f} (the codes\' own '
                   'frequencies, no context)'))
  cc = result.get('class_consistency')
  if cc:
    rows.append(('class consistency', f'not measured ({cc["reason"]})' if cc['value'] is None
                 else f'{100 * cc["value"]:.1f}% of {cc["samples_per_class"]} samples per '
                      f'class at temperature 1 (classifier test accuracy '
                      f'{100 * cc["classifier_test_accuracy"]:.1f}%)'))
  width = max(len(name) for name, _ in rows)
  return '\n'.join(f'{name:<{width}}  {value}' for name, value in rows)
