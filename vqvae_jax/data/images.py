"""Image decoding, resizing and the training-only random-resized-crop."""
from __future__ import annotations

import numpy as np
from PIL import Image

from vqvae_jax.errors import UserError

_RESAMPLE = Image.Resampling.BICUBIC


def decode(path: str, channels: int) -> np.ndarray:
  """Reads an image file as [H, W, channels] uint8 (grey <-> RGB converted).

  Raises:
    UserError: naming `path` when the file is not a readable image.
  """
  try:
    with Image.open(path) as im:
      im = im.convert('L' if channels == 1 else 'RGB')
      array = np.asarray(im, np.uint8)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise UserError(f'cannot decode image {path}: {e}') from e
  return array[..., None] if channels == 1 else array


def resize_center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """[H, W, C] uint8 -> [size, size, C] uint8.

  Scales the shorter side to `size` (bicubic), then crops the centre square;
  e.g. 84x100 -> 84x84 keeps columns 8..91. A square image of the right size
  is returned unchanged.
  """
  h, w, c = image.shape
  if (h, w) == (size, size):
    return image
  scale = size / min(h, w)
  nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
  im = Image.fromarray(image[..., 0] if c == 1 else image)
  im = im.resize((nw, nh), _RESAMPLE)
  top, left = (nh - size) // 2, (nw - size) // 2
  out = np.asarray(im.crop((left, top, left + size, top + size)), np.uint8)
  return out[..., None] if c == 1 else out


def resize_all(images: np.ndarray, size: int | None) -> np.ndarray:
  """[N, H, W, C] -> [N, size, size, C]; unchanged when size is None or equal."""
  if size is None or images.shape[1:3] == (size, size):
    return images
  if size < 1:
    raise UserError(f'image size must be positive, got {size}')
  out = np.empty((len(images), size, size, images.shape[-1]), np.uint8)
  for i, image in enumerate(images):
    out[i] = resize_center_crop(image, size)
  return out


def random_resized_crop(images: np.ndarray, rng: np.random.Generator, *,
                        scale: tuple[float, float] = (0.35, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        flip: bool = True) -> np.ndarray:
  """Training augmentation: a random crop per image, resized back.

  Crop area is uniform in `scale` times the image area, its aspect ratio
  log-uniform in `ratio` (Szegedy et al. 2015 / torchvision's
  RandomResizedCrop), plus a random horizontal flip. Never use it for eval.

  Args:
    images: [B, H, W, C] uint8.
    rng: e.g. `np.random.default_rng([seed, epoch, step])` for reproducibility.

  Returns:
    [B, H, W, C] uint8, a pure function of (images, rng state).
  """
  b, h, w, c = images.shape
  out = np.empty_like(images)
  for i in range(b):
    area = h * w * rng.uniform(*scale)
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    ch = int(min(h, max(1, round(np.sqrt(area / aspect)))))
    cw = int(min(w, max(1, round(np.sqrt(area * aspect)))))
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    crop = images[i, top:top + ch, left:left + cw]
    im = Image.fromarray(crop[..., 0] if c == 1 else crop).resize((w, h), _RESAMPLE)
    out[i] = np.asarray(im, np.uint8).reshape(h, w, c)
    if flip and rng.uniform() < 0.5:
      out[i] = out[i, :, ::-1]
  return out
