"""Image decoding, resizing and the training-only random-resized-crop."""
from __future__ import annotations

import logging

import numpy as np
import tqdm
from PIL import Image

from vqvae_jax.distributed import is_main_process
from vqvae_jax.errors import UserError

_RESAMPLE = Image.Resampling.BICUBIC


_GREY_MODES = ('1', 'L', 'LA')
_DEEP_MODES = ('I', 'I;16', 'I;16B', 'I;16L', 'F')


def decode(path: str, channels: int | None = None) -> np.ndarray:
  """Reads an 8-bit image file as [H, W, C] uint8.

  Args:
    path: any format Pillow reads (PNG, JPEG, BMP, GIF, WebP, ...).
    channels: 1 (grey) or 3 (RGB) to convert to; None keeps grey images grey
      and makes everything else RGB (palette, RGBA and CMYK are converted).

  Raises:
    UserError: naming `path` when it is not a readable 8-bit image.
  """
  try:
    with Image.open(path) as im:
      if im.mode in _DEEP_MODES:
        raise UserError(f'{path}: {im.mode} (16-bit or float) images are not '
                        'supported; convert them to 8-bit PNG or JPEG')
      if channels is None:
        channels = 1 if im.mode in _GREY_MODES else 3
      array = np.asarray(im.convert('L' if channels == 1 else 'RGB'), np.uint8)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise UserError(f'cannot decode image {path}: {e}') from e
  return array[..., None] if channels == 1 else array


def to_channels(images: np.ndarray, channels: int | None) -> np.ndarray:
  """[..., C] uint8 -> [..., channels]: grey repeated, or RGB -> luma (ITU-R 601)."""
  c = images.shape[-1]
  if channels is None or channels == c:
    return images
  if channels not in (1, 3):
    raise UserError(f'channels must be 1 or 3, got {channels}')
  if channels == 3:
    return np.repeat(images, 3, axis=-1)
  luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
  return np.clip(np.round(luma), 0, 255).astype(np.uint8)[..., None]


def decode_many(paths: list[str], size: int | None, channels: int | None, *,
                skip_corrupt: bool = False, desc: str = 'decoding'):
  """Decodes, resizes and stacks image files, with a progress bar.

  Args:
    paths: N image files.
    size: output side (resize + centre crop); None needs equal sizes.
    channels: 1, 3, or None (1 only if every image is grey, else 3).
    skip_corrupt: skip unreadable files (counted in a warning) instead of
      raising.

  Returns:
    images [M, S, S, C] uint8 and kept [M] int64 indices into `paths`
    (M = N unless files were skipped).
  """
  # Known output shape: fill one array (no list + stack copy of the data set).
  out = (np.empty((len(paths), size, size, channels), np.uint8)
         if size and channels else None)
  decoded, kept, bad = [], [], []
  for i, path in enumerate(tqdm.tqdm(paths, desc=desc, unit='img', mininterval=2.0,
                                     disable=len(paths) < 2000 or not is_main_process(),
                                     leave=False)):
    try:
      image = decode(path, channels)
    except UserError:
      if not skip_corrupt:
        raise
      bad.append(path)
      continue
    image = image if size is None else resize_center_crop(image, size)
    if out is not None:
      out[len(kept)] = image
    else:
      decoded.append(image)
    kept.append(i)
  if bad and is_main_process():
    logging.warning('skipped %d unreadable image(s), e.g. %s', len(bad), bad[0])
  if not kept:
    raise UserError(f'no readable images among {len(paths)} files')
  if out is not None:
    return out[:len(kept)], np.asarray(kept, np.int64)
  shapes = {d.shape[:2] for d in decoded}
  if len(shapes) > 1:
    raise UserError(f'images have different sizes ({sorted(shapes)[:3]} ...); '
                    'set image_size to resize them')
  c = max(d.shape[-1] for d in decoded)
  images = np.stack([to_channels(d, c) for d in decoded])
  return images, np.asarray(kept, np.int64)


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


def augment(images: np.ndarray, *, seed: int, epoch: int, step: int,
            first_index: int = 0) -> np.ndarray:
  """`random_resized_crop`, image i with a generator drawn from (seed, epoch,
  step, first_index + i), its position in the global batch.

  The result depends only on those numbers: a resumed run augments its
  batches exactly as the uninterrupted run would have, and an image is
  augmented the same however many processes share the batch (process p passes
  first_index = p * its batch size). Training only.
  """
  out = np.empty_like(images)
  for i in range(len(images)):
    out[i:i + 1] = random_resized_crop(
        images[i:i + 1], np.random.default_rng([seed, epoch, step, first_index + i]))
  return out
