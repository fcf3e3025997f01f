"""New images from existing codes: swap code cells under a mask, decode saved grids.

`compose` takes two code grids A and B of the same shape [h, w] and a boolean
mask [h, w]: the result is A with the cells where the mask is True taken from
B. Named masks select half of the grid (`left` = the first ceil(w/2) columns,
`right` the others; `top` / `bottom` likewise for rows); a mask file is a .npy
boolean/integer grid [h, w], or an image of any size, resized to h x w by
averaging (box filter) and thresholded at half intensity (white = take B).
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from vqvae_jax import fileio
from vqvae_jax.codec import compression, vqz
from vqvae_jax.errors import UserError

NAMED_MASKS = ('left', 'right', 'top', 'bottom')


def named_mask(name: str, shape) -> np.ndarray:
  """'left' | 'right' | 'top' | 'bottom' -> bool [h, w]."""
  h, w = shape
  rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
  masks = {'left': cols < (w + 1) // 2, 'right': cols >= (w + 1) // 2,
           'top': rows < (h + 1) // 2, 'bottom': rows >= (h + 1) // 2}
  if name not in masks:
    raise UserError(f'unknown mask {name!r}: use {", ".join(NAMED_MASKS)} or a file')
  return np.broadcast_to(masks[name], (h, w)).copy()


def load_mask(spec: str, shape) -> np.ndarray:
  """A named mask, a .npy grid or a mask image -> bool [h, w]."""
  if spec in NAMED_MASKS:
    return named_mask(spec, shape)
  if not os.path.exists(spec):
    raise UserError(f'mask {spec!r} is neither {", ".join(NAMED_MASKS)} nor an existing file')
  if spec.endswith('.npy'):
    mask = _load_npy(spec)
    if mask.shape != tuple(shape):
      raise UserError(f'mask {spec} is {mask.shape}, but the code grid is {tuple(shape)}')
    return mask.astype(bool)
  try:
    with Image.open(spec) as im:
      small = im.convert('L').resize((shape[1], shape[0]), Image.Resampling.BOX)
  except (OSError, UnidentifiedImageError, ValueError) as e:
    raise UserError(f'cannot read mask image {spec}: {e}') from e
  return np.asarray(small) >= 128


def _load_npy(path: str) -> np.ndarray:
  try:
    return np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise UserError(f'cannot read {path} as a .npy array: {e}') from e


def compose_codes(a, b, mask) -> np.ndarray:
  """a, b: codes [h, w], mask: bool [h, w] -> where(mask, b, a)."""
  a, b, mask = np.asarray(a), np.asarray(b), np.asarray(mask, bool)
  if a.shape != b.shape or a.shape != mask.shape:
    raise UserError(f'A, B and the mask must have the same code grid, got {a.shape}, '
                    f'{b.shape} and {mask.shape}: use images of the same size')
  return np.where(mask, b, a).astype(np.int32)


def load_codes(codec, path: str) -> np.ndarray:
  """A saved code grid (.npy, [h, w] or [B, h, w]) -> int32 [B, h, w], checked."""
  codes = _load_npy(path)
  if codes.ndim == 2:
    codes = codes[None]
  if codes.ndim != 3 or not np.issubdtype(codes.dtype, np.integer) or codes.size == 0:
    raise UserError(f'{path} must hold integer codes [h, w] or [B, h, w], got '
                    f'{codes.dtype} {codes.shape}')
  if codes.min() < 0 or codes.max() >= codec.k:
    raise UserError(f'{path} holds codes in [{codes.min()}, {codes.max()}], but this model '
                    f'has K = {codec.k}: it was made with another model')
  return codes.astype(np.int32)


def save_codes(path: str, codes) -> None:
  """Writes a code grid as .npy (int32), atomically."""
  fileio.save_npy(path, np.asarray(codes, np.int32))


def codes_of(codec, path: str) -> np.ndarray:
  """Codes [h, w] of an image file, a .npy grid or a .vqz file."""
  if path.endswith('.npy'):
    codes = load_codes(codec, path)
    if codes.shape[0] != 1:
      raise UserError(f'{path} holds {codes.shape[0]} grids; compose takes one')
    return codes[0]
  if not os.path.isfile(path):
    raise UserError(f'{path}: no such file')
  with open(path, 'rb') as f:
    head = f.read(len(vqz.MAGIC))
  if vqz.is_compressed(head):
    with open(path, 'rb') as f:
      return compression.read_codes(codec, f.read(), path)[1]
  image = compression.load_image(path, codec.channels)
  return compression.encode_images(codec, compression.pad_image(image)[None])[0]


def compose(codec, a: str, b: str, mask: str) -> tuple[np.ndarray, np.ndarray]:
  """Paths of A and B (images, .npy or .vqz) and a mask spec -> (codes [h, w],
  decoded uint8 image [4h, 4w, C])."""
  codes_a, codes_b = codes_of(codec, a), codes_of(codec, b)
  codes = compose_codes(codes_a, codes_b, load_mask(mask, codes_a.shape))
  return codes, compression.decode_codes(codec, codes[None])[0]
