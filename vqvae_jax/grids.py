"""Image grids written as PNG files: reconstructions, labelled rows of samples."""
from __future__ import annotations

import functools
import io

import jax
import numpy as np
from PIL import Image, ImageDraw

from vqvae_jax.fileio import atomic_write
from vqvae_jax.models import sampling
from vqvae_jax.models.vqvae import to_float, to_uint8


def make_grid(images, ncol: int, pad: int = 2, fill: int = 255) -> np.ndarray:
  """images [N, H, W, C] uint8 -> one image [rows*(H+pad)+pad, ncol*(W+pad)+pad, C]."""
  images = np.asarray(images)
  n, h, w, c = images.shape
  nrow = -(-n // ncol)
  grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), fill, np.uint8)
  for i in range(n):
    r, q = divmod(i, ncol)
    y, x = pad + r * (h + pad), pad + q * (w + pad)
    grid[y:y + h, x:x + w] = images[i]
  return grid


def label_rows(grid: np.ndarray, labels, row_height: int, margin: int = 110) -> np.ndarray:
  """Adds a white margin on the left with one text label per grid row."""
  h, w, c = grid.shape
  rgb = np.repeat(grid, 3, axis=-1) if c == 1 else grid
  canvas = Image.new('RGB', (w + margin, h), 'white')
  canvas.paste(Image.fromarray(rgb), (margin, 0))
  draw = ImageDraw.Draw(canvas)
  for i, text in enumerate(labels):
    draw.text((4, i * row_height + row_height // 2 - 5), str(text)[:18], fill='black')
  return np.asarray(canvas)


@functools.lru_cache(maxsize=8)
def _reconstruct_fn(model):
  """One jitted reconstruction per model (compiled once, not at every epoch's grid)."""
  return jax.jit(lambda v, x: model.apply(v, to_float(x)).x_tilde)


def reconstruction_grid(model, variables, images_u8) -> np.ndarray:
  """Originals (top half) over reconstructions (bottom half): uint8 grid image."""
  recon = _reconstruct_fn(model)(variables, images_u8)
  both = np.concatenate([np.asarray(images_u8), to_uint8(recon)])
  return make_grid(both, ncol=max(1, len(images_u8) // 4))


def labelled_grid(images, class_names, per_class) -> np.ndarray:
  """`sampling.sample_images`' images -> one labelled row per class: uint8 [H', W', 3]."""
  image = make_grid(images, ncol=per_class)
  return label_rows(image, class_names, row_height=images.shape[1] + 2)


def sample_grid(prior, prior_params, vq_model, vq_variables, class_names, per_class, grid,
                key, temperature=1.0) -> np.ndarray:
  """One row per class of decoded samples, labelled: uint8 [H', W', 3]."""
  images, _ = sampling.sample_images(prior, prior_params, vq_model, vq_variables,
                                     len(class_names), per_class, grid, key, temperature)
  return labelled_grid(images, class_names, per_class)


def png_bytes(image: np.ndarray) -> bytes:
  """An [H, W, C] uint8 array (C = 1 or 3) encoded as PNG."""
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format='PNG')
  return buf.getvalue()


def save_png(image: np.ndarray, path: str) -> None:
  """Writes an [H, W, C] uint8 array (C = 1 or 3) atomically as PNG."""
  atomic_write(path, png_bytes(image))
