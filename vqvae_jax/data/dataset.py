"""The in-memory data set record and the fixed train/valid hold-out rule."""
from __future__ import annotations

import dataclasses

import numpy as np

from vqvae_jax.errors import UserError

SPLITS = ('train', 'valid', 'test')

# Data sets that ship without a validation split hold out the *last*
# `min(MAX_VALID, n // 10)` training examples (file order) as `valid`:
# 5,000 of MNIST's / Fashion-MNIST's 60,000 and of CIFAR-10's 50,000.
MAX_VALID = 5000


@dataclasses.dataclass(frozen=True)
class Dataset:
  """One split of a data set.

  Attributes:
    images: [N, H, W, C] uint8, C = 1 or 3 (may be a read-only memory map).
    labels: [N] int32, `labels[i]` indexes `class_names`.
    class_names: class id i <-> `class_names[i]`.
    name: the data set name, e.g. 'fashion-mnist'.
    split: 'train', 'valid' or 'test'.
    episodes: [N] int32 episode id of each frame (atari-boxing), else None.
  """
  images: np.ndarray
  labels: np.ndarray
  class_names: tuple[str, ...]
  name: str = ''
  split: str = ''
  episodes: np.ndarray | None = None

  def __post_init__(self):
    images, labels = self.images, self.labels
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[-1] not in (1, 3):
      raise ValueError(f'images must be [N, H, W, 1|3] uint8, got {images.shape} {images.dtype}')
    if labels.shape != images.shape[:1] or labels.dtype != np.int32:
      raise ValueError(f'labels must be [{len(images)}] int32, got {labels.shape} {labels.dtype}')

  def __len__(self) -> int:
    return len(self.labels)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of every image."""
    return tuple(self.images.shape[1:])

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def check_split(split: str) -> str:
  if split not in SPLITS:
    raise UserError(f'unknown split {split!r}; expected one of {", ".join(SPLITS)}')
  return split


def num_valid(num_train_file: int) -> int:
  """How many of `num_train_file` training examples are held out as `valid`."""
  return min(MAX_VALID, num_train_file // 10)


def holdout(images: np.ndarray, labels: np.ndarray, split: str):
  """Splits a training file into `train` (first part) and `valid` (last part).

  Args:
    images: [N, ...] the training file's images, in file order.
    labels: [N] the matching labels.
    split: 'train' or 'valid'.

  Returns:
    (images, labels) of the requested part; e.g. N = 60,000 gives
    train = [0, 55000) and valid = [55000, 60000).
  """
  cut = len(labels) - num_valid(len(labels))
  part = slice(0, cut) if split == 'train' else slice(cut, None)
  return images[part], labels[part]


def relabel(ds: Dataset, class_names) -> np.ndarray:
  """The labels of `ds` [N] as ids into `class_names` (a model's training
  classes), matched by name; UserError if `ds` holds a class not among them
  (Mini-ImageNet's valid/test classes are not its training classes)."""
  names = tuple(ds.class_names)
  if names == tuple(class_names):
    return np.asarray(ds.labels, np.int32)
  index = {name: i for i, name in enumerate(class_names)}
  unknown = sorted(set(names[int(y)] for y in np.unique(ds.labels)) - set(index))
  if unknown:
    raise UserError(
        f'the {ds.split} split of {ds.name} holds classes the VQ-VAE was not trained on '
        f'({", ".join(unknown[:5])}{", ..." if len(unknown) > 5 else ""}): a class-'
        'conditional prior cannot be fitted or evaluated on them. Use a data set whose '
        'splits share their classes (e.g. --dataset folder with train/valid/test sub-folders)')
  remap = np.asarray([index.get(n, -1) for n in names], np.int32)
  return remap[np.asarray(ds.labels)]
