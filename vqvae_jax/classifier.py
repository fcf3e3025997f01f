"""Class consistency of class-conditional samples, measured by a small classifier.

A few-layer CNN is trained on the real *training* split of the VQ-VAE's data
set (a minute or two of CPU for Fashion-MNIST), its accuracy measured on the
real *test* split, and the pair cached under
`$VQVAE_CACHE_DIR/classifiers/<dataset>-<key>/` (params.msgpack + meta.json,
written to a temporary folder and renamed into place; `key` hashes the
training images, labels, class names and the training options, so other data
means another classifier). The class consistency of samples is the fraction
the classifier labels as the class they were drawn for: 1 for the real images
of each class if the classifier were perfect, about 1 / num_classes for
samples that ignore their label.

    trained = classifier.get(vq_config, class_names)      # trains once, then cached
    classifier.consistency(trained, images, labels)       # images [N, H, W, C] uint8
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vqvae_jax import data, runs
from vqvae_jax.data import cache
from vqvae_jax.errors import UserError

_VERSION = 1  # bump when the model or its training changes


@dataclasses.dataclass(frozen=True)
class Options:
  """How the classifier is trained: min(max_steps, epochs * steps per epoch) Adam
  steps of `batch_size` (at most the training set), batches from `seed`."""
  epochs: int = 4
  max_steps: int = 2000
  batch_size: int = 128
  lr: float = 1e-3
  widths: tuple = (16, 32, 64)
  hidden: int = 128
  seed: int = 0


class CNN(nn.Module):
  """images [B, H, W, C] uint8 -> logits [B, num_classes] float32.

  3x3 stride-2 convolutions of `widths` with ReLU (28x28 -> 14 -> 7 -> 4),
  flatten, Dense(hidden) + ReLU, Dense(num_classes).
  """
  num_classes: int
  widths: tuple = (16, 32, 64)
  hidden: int = 128

  @nn.compact
  def __call__(self, images):
    x = jnp.asarray(images, jnp.float32) / 255.0
    for width in self.widths:
      x = nn.relu(nn.Conv(width, (3, 3), strides=(2, 2))(x))
    x = nn.relu(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes)(x)


@dataclasses.dataclass(frozen=True)
class Trained:
  """A trained classifier: its model, parameters, real test accuracy, cache folder
  and whether this call trained it (False: read from the cache)."""
  model: CNN
  params: Any
  test_accuracy: float
  folder: str
  trained_now: bool


def train(images, labels, num_classes: int, options: Options = Options()):
  """Fits a `CNN` to images [N, H, W, C] uint8 and labels [N] int; returns
  (model, params). Deterministic for `options.seed`."""
  model = CNN(num_classes, tuple(options.widths), options.hidden)
  n = len(labels)
  batch = min(options.batch_size, n)
  per_epoch = n // batch
  steps = min(options.max_steps, options.epochs * per_epoch)
  key = jax.random.key(options.seed)
  params = jax.jit(model.init)(key, jnp.zeros((1,) + images.shape[1:], jnp.uint8))['params']
  tx = optax.adam(options.lr)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      return optax.softmax_cross_entropy_with_integer_labels(model.apply({'params': p}, x),
                                                             y).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  labels = np.asarray(labels, np.int32)
  for t in range(steps):
    epoch, i = divmod(t, per_epoch)
    idx = np.sort(data.epoch_permutation(n, options.seed, epoch)[i * batch:(i + 1) * batch])
    params, opt_state = step(params, opt_state, np.asarray(images[idx]), labels[idx])
  return model, params


def predict(model: CNN, params, images, batch_size: int = 500) -> np.ndarray:
  """images [N, H, W, C] uint8 -> predicted classes [N] int32 (one compiled shape)."""
  fn = jax.jit(lambda p, x: jnp.argmax(model.apply({'params': p}, x), axis=-1))
  out = []
  for start in range(0, len(images), batch_size):
    x = np.asarray(images[start:start + batch_size])
    pad = batch_size - len(x)
    if pad:
      x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    out.append(np.asarray(fn(params, x))[:batch_size - pad])
  return np.concatenate(out).astype(np.int32) if out else np.zeros((0,), np.int32)


def consistency(trained: Trained, images, labels) -> float:
  """Fraction of images [N, H, W, C] uint8 that the classifier labels as their
  labels [N] (class ids of the VQ-VAE's class names)."""
  labels = np.asarray(labels)
  if len(labels) == 0:
    raise ValueError('no images to classify')
  return float(np.mean(predict(trained.model, trained.params, images) == labels))


def per_class(trained: Trained, images, labels, class_names) -> dict:
  """{class name: consistency of that class's images} for the classes present."""
  labels = np.asarray(labels)
  hits = predict(trained.model, trained.params, images) == labels
  return {class_names[c]: float(np.mean(hits[labels == c])) for c in np.unique(labels)}


def cache_key(images, labels, class_names, options: Options) -> str:
  """sha256 (16 hex digits) of the training images [N, H, W, C], labels [N],
  class names and options."""
  h = hashlib.sha256(json.dumps([_VERSION, list(class_names), list(images.shape),
                                 dataclasses.asdict(options)], default=str).encode())
  h.update(np.ascontiguousarray(labels, np.int32).tobytes())
  h.update(np.ascontiguousarray(images))
  return h.hexdigest()[:16]


def get(config, class_names, options: Options | None = None) -> Trained:
  """The classifier for the data set of a VQ-VAE run's `config`, trained on its
  real training split and cached; labels are ids into `class_names`.

  Raises UserError when it cannot be trained: one class only (nothing to tell
  apart, e.g. Atari frames), or a split that cannot be loaded or relabelled.
  """
  if len(class_names) < 2:
    raise UserError(f'{config.dataset} has {len(class_names)} class: class consistency '
                    'does not apply')
  options = options or Options(seed=int(config.seed))
  train_ds = runs.load_split(config, 'train')
  train_labels = data.relabel(train_ds, class_names)
  key = cache_key(train_ds.images, train_labels, class_names, options)
  folder = os.path.join(cache.root(), 'classifiers', f'{config.dataset}-{key}')
  model = CNN(len(class_names), tuple(options.widths), options.hidden)
  saved = _read(folder, model, train_ds.image_shape)
  if saved is not None:
    params, accuracy = saved
    return Trained(model, params, accuracy, folder, trained_now=False)
  test_ds = runs.load_split(config, 'test')
  test_labels = data.relabel(test_ds, class_names)
  model, params = train(train_ds.images, train_labels, len(class_names), options)
  accuracy = float(np.mean(predict(model, params, test_ds.images) == test_labels))
  meta = {'dataset': config.dataset, 'class_names': list(class_names),
          'options': dataclasses.asdict(options), 'n_train': len(train_ds),
          'n_test': len(test_ds), 'test_accuracy': accuracy}
  _write(folder, params, meta)
  return Trained(model, params, accuracy, folder, trained_now=True)


def _read(folder, model, image_shape):
  """(params, test accuracy) from a cache folder, or None if absent or unreadable."""
  try:
    with open(os.path.join(folder, 'meta.json')) as f:
      meta = json.load(f)
    with open(os.path.join(folder, 'params.msgpack'), 'rb') as f:
      blob = f.read()
  except (OSError, ValueError):
    return None
  template = jax.eval_shape(model.init, jax.random.key(0),
                            jnp.zeros((1,) + tuple(image_shape), jnp.uint8))['params']
  template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template)
  try:
    params = flax.serialization.from_bytes(template, blob)
  except (ValueError, KeyError, TypeError) as e:
    logging.warning('retraining the classifier: unreadable cache %s (%s)', folder, e)
    return None
  return params, float(meta['test_accuracy'])


def _write(folder, params, meta) -> None:
  """Writes params + meta to a temporary folder, then renames it to `folder`;
  an unwritable cache only costs a retraining next time."""
  parent = os.path.dirname(folder)
  try:
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.' + os.path.basename(folder) + '.', dir=parent)
    with open(os.path.join(tmp, 'params.msgpack'), 'wb') as f:
      f.write(flax.serialization.to_bytes(jax.device_get(params)))
    with open(os.path.join(tmp, 'meta.json'), 'w') as f:
      json.dump(meta, f, indent=2, sort_keys=True)
    try:
      os.rename(tmp, folder)
    except OSError:  # another process finished first
      shutil.rmtree(tmp, ignore_errors=True)
  except OSError as e:
    logging.warning('cannot write the classifier cache under %s (%s)', parent, e)
