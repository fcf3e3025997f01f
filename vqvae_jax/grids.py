"""Image grids written as PNG files."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from vqvae_jax.fileio import atomic_write


def to_uint8(x) -> np.ndarray:
  """Images in [-1, 1] (any float) -> uint8 [0, 255], rounded."""
  x = np.asarray(x, np.float32)
  return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


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


def save_png(image: np.ndarray, path: str) -> None:
  """Writes an [H, W, C] uint8 array (C = 1 or 3) atomically as PNG."""
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format='PNG')
  atomic_write(path, buf.getvalue())
