"""Batch iterators, sharding and prefetch: coverage, determinism, resume."""
import jax
import numpy as np
import pytest

from vqvae_jax import data
from vqvae_jax.errors import UserError


def _ds(n=50, size=4):
  """Image i is filled with i % 256 and labelled i, so batches can be traced."""
  ids = np.arange(n)
  images = np.broadcast_to((ids % 256).astype(np.uint8)[:, None, None, None],
                           (n, size, size, 3)).copy()
  return data.Dataset(images, ids.astype(np.int32), ('a',), 'toy', 'train')


def _epoch(ds, b, **kw):
  return list(data.train_batches(ds, b, **kw))


def test_train_batches_shapes_drop_partial_and_no_repeats():
  ds = _ds(50)
  batches = _epoch(ds, 8, seed=0, epoch=0)
  assert len(batches) == data.steps_per_epoch(ds, 8) == 6
  ids = np.concatenate([y for _, y in batches])
  assert len(np.unique(ids)) == 48  # 2 dropped, none repeated
  for x, y in batches:
    assert x.shape == (8, 4, 4, 3) and x.dtype == np.uint8 and y.dtype == np.int32
    np.testing.assert_array_equal(x[:, 0, 0, 0], y % 256)  # images match labels


def test_train_batches_deterministic_and_reshuffled_per_epoch():
  ds = _ds(50)
  a = np.concatenate([y for _, y in _epoch(ds, 8, seed=3, epoch=1)])
  b = np.concatenate([y for _, y in _epoch(ds, 8, seed=3, epoch=1)])
  c = np.concatenate([y for _, y in _epoch(ds, 8, seed=3, epoch=2)])
  d = np.concatenate([y for _, y in _epoch(ds, 8, seed=4, epoch=1)])
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_start_resumes_exactly():
  ds = _ds(50)
  full = _epoch(ds, 8, seed=1, epoch=5)
  tail = _epoch(ds, 8, seed=1, epoch=5, start=4)
  assert len(tail) == 2
  for (_, y0), (_, y1) in zip(full[4:], tail):
    np.testing.assert_array_equal(y0, y1)


def test_processes_split_global_batches():
  ds = _ds(50)
  full = _epoch(ds, 8, seed=2, epoch=0)
  parts = [_epoch(ds, 8, seed=2, epoch=0, process_index=i, process_count=2)
           for i in range(2)]
  for step, (x, y) in enumerate(full):
    assert parts[0][step][1].shape == (4,)
    # in order: device d of process p gets the same examples for any process count
    np.testing.assert_array_equal(y, np.concatenate([parts[0][step][1], parts[1][step][1]]))
    np.testing.assert_array_equal(x, np.concatenate([parts[0][step][0], parts[1][step][0]]))
    np.testing.assert_array_equal(x[:, 0, 0, 0], y % 256)  # images still match labels
  assert any(not np.array_equal(np.sort(y), y) for _, y in full)  # not just sorted
  with pytest.raises(UserError, match='split evenly'):
    _epoch(ds, 9, seed=0, epoch=0, process_index=0, process_count=2)


def test_batch_larger_than_data_is_user_error():
  with pytest.raises(UserError, match='larger than'):
    data.steps_per_epoch(_ds(5), 8)


@pytest.mark.parametrize('n,b,procs', [(50, 8, 1), (48, 8, 1), (50, 8, 2), (3, 8, 2)])
def test_eval_batches_cover_every_example_once(n, b, procs):
  ds = _ds(n)
  seen = []
  counts = set()
  for p in range(procs):
    batches = list(data.eval_batches(ds, b, process_index=p, process_count=procs))
    counts.add(len(batches))
    for x, y, mask in batches:
      assert x.shape == (b // procs, 4, 4, 3) and mask.dtype == bool
      np.testing.assert_array_equal(x[mask][:, 0, 0, 0], y[mask] % 256)
      assert not x[~mask].any()  # padding is zeros
      seen.extend(y[mask].tolist())
  assert counts == {data.num_eval_batches(ds, b)}  # same count on every process
  assert sorted(seen) == list(range(n))


def test_shard_shapes_and_error():
  x, y = np.zeros((8, 4, 4, 3), np.uint8), np.arange(8)
  sx, sy = data.shard((x, y), 2)
  assert sx.shape == (2, 4, 4, 4, 3) and sy.shape == (2, 4)
  np.testing.assert_array_equal(sy[1], [4, 5, 6, 7])
  with pytest.raises(UserError, match='3 devices'):
    data.shard((x, y), 3)


def test_prefetch_to_device_matches_host_batches():
  ds = _ds(50)
  n_dev = jax.local_device_count()
  host = list(data.eval_batches(ds, 8))
  dev = list(data.prefetch_to_device(iter(host), size=2))
  assert len(dev) == len(host)
  for (x, y, m), (dx, dy, dm) in zip(host, dev):
    assert dx.shape == (n_dev, 8 // n_dev, 4, 4, 3) and dx.dtype == np.uint8
    assert len(dx.sharding.device_set) == n_dev
    np.testing.assert_array_equal(np.asarray(dx).reshape(x.shape), x)
    np.testing.assert_array_equal(np.asarray(dy).reshape(-1), y)
    np.testing.assert_array_equal(np.asarray(dm).reshape(-1), m)
  out = jax.pmap(lambda a: a.sum())(dev[0][1])  # consumable by pmap
  assert int(out.sum()) == int(host[0][1].sum())
