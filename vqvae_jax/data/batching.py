"""Host batch iterators, device sharding and host->device prefetch.

Training batches are a fresh permutation per epoch drawn from (seed, epoch);
the global order does not depend on the number of processes, each process
takes its contiguous slice of every global batch. Evaluation visits every
example exactly once and pads the last batch, with a mask.
"""
from __future__ import annotations

import collections
from typing import Any, Iterable, Iterator

import jax
import numpy as np

from vqvae_jax.data.dataset import Dataset
from vqvae_jax.errors import UserError


def _local_size(batch_size: int, process_index: int, process_count: int) -> int:
  if batch_size < 1:
    raise UserError(f'batch size must be positive, got {batch_size}')
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} not in [0, {process_count})')
  if batch_size % process_count:
    raise UserError(f'global batch size {batch_size} does not split evenly over '
                    f'{process_count} processes')
  return batch_size // process_count


def steps_per_epoch(ds: Dataset, global_batch_size: int) -> int:
  """Number of full training batches per epoch (the last partial one is dropped)."""
  steps = len(ds) // global_batch_size
  if steps == 0:
    raise UserError(f'batch size {global_batch_size} is larger than the '
                    f'{len(ds)} examples of {ds.name or "the data set"} {ds.split}')
  return steps


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
  """[n] int64 permutation of range(n), a pure function of (seed, epoch)."""
  return np.random.default_rng([seed, epoch]).permutation(n)


def train_batches(ds: Dataset, global_batch_size: int, *, seed: int, epoch: int,
                  start: int = 0, process_index: int = 0,
                  process_count: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """One epoch of shuffled training batches for this process.

  Args:
    ds: the training split.
    global_batch_size: B, summed over all processes.
    seed: non-negative int; with `epoch` it fixes the order.
    epoch: non-negative epoch number.
    start: skip the first `start` batches (exact mid-epoch resume).
    process_index, process_count: this process's slice of each global batch.

  Yields:
    images [b, H, W, C] uint8 and labels [b] int32 with b = B // process_count,
    for steps start .. steps_per_epoch - 1.
  """
  local = _local_size(global_batch_size, process_index, process_count)
  steps = steps_per_epoch(ds, global_batch_size)
  order = epoch_permutation(len(ds), seed, epoch)
  for step in range(start, steps):
    lo = step * global_batch_size + process_index * local
    idx = order[lo:lo + local]
    # Read in index order (faster from a memory map), then put the examples back
    # in batch order, so that device d of process p gets the same examples
    # however many processes share the batch.
    srt = np.argsort(idx, kind='stable')
    images = np.empty((local,) + ds.images.shape[1:], ds.images.dtype)
    images[srt] = ds.images[idx[srt]]
    yield images, np.asarray(ds.labels[idx])


def num_eval_batches(ds: Dataset, batch_size: int) -> int:
  return -(-len(ds) // batch_size)


def eval_batches(ds: Dataset, batch_size: int, *, process_index: int = 0,
                 process_count: int = 1
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Every example exactly once, in order; the last batch is zero-padded.

  Every process yields the same number of batches (ceil(N / batch_size)).

  Args:
    ds: the split to evaluate.
    batch_size: B, the global batch size (summed over processes).

  Yields:
    images [b, H, W, C] uint8, labels [b] int32 and mask [b] bool, where
    b = B // process_count and mask marks real (not padding) examples.
  """
  local = _local_size(batch_size, process_index, process_count)
  n = len(ds)
  for step in range(num_eval_batches(ds, batch_size)):
    lo = min(n, step * batch_size + process_index * local)
    hi = min(n, lo + local)
    images = np.zeros((local,) + ds.image_shape, ds.images.dtype)
    labels = np.zeros((local,), np.int32)
    images[:hi - lo] = ds.images[lo:hi]
    labels[:hi - lo] = ds.labels[lo:hi]
    yield images, labels, np.arange(local) < hi - lo


def shard(tree: Any, num_devices: int) -> Any:
  """Reshapes every leaf [b, ...] -> [num_devices, b // num_devices, ...]."""

  def _one(x):
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[0] % num_devices:
      raise UserError(f'a batch of {x.shape[:1]} examples does not split evenly '
                      f'over {num_devices} devices; pick a per-process batch size '
                      f'divisible by {num_devices}')
    return x.reshape((num_devices, x.shape[0] // num_devices) + x.shape[1:])

  return jax.tree.map(_one, tree)


def prefetch_to_device(iterator: Iterable[Any], size: int = 2,
                       devices: list[jax.Device] | None = None) -> Iterator[Any]:
  """Shards host batches and copies them to the devices `size` batches ahead.

  Args:
    iterator: yields pytrees of host arrays with leading axis b (NOT yet
      sharded), e.g. the tuples of `train_batches` / `eval_batches`.
    size: how many batches are in flight; 2 overlaps one copy with one step.
    devices: defaults to `jax.local_devices()`, the order `jax.pmap` uses.

  Yields:
    The same pytrees with leaves [n_dev, b // n_dev, ...] as jax.Arrays
    sharded over `devices`, ready for a pmap'd step (dtypes unchanged).
  """
  if size < 1:
    raise ValueError(f'prefetch size must be >= 1, got {size}')
  devices = list(devices or jax.local_devices())
  mesh = jax.sharding.Mesh(np.array(devices), ('batch',))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('batch'))

  def _put(batch):
    return jax.tree.map(lambda x: jax.device_put(x, sharding),
                        shard(batch, len(devices)))

  queue = collections.deque()
  for batch in iterator:
    queue.append(_put(batch))  # device_put is asynchronous
    if len(queue) >= size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()
