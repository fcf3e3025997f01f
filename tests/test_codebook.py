"""Codebook health: EMA updates, dead-code restart, data init, replicas in sync."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vqvae_jax import runs, states
from vqvae_jax.cli.config_files import load_config, override
from vqvae_jax.errors import UserError
from vqvae_jax.models import quantizer, vqvae
from vqvae_jax.train import codebook as codebook_lib, vqvae as vqvae_training
from vqvae_jax.train.loop import AXIS, replicate

KINDS = ('loss', 'ema')


def _ema_reference(counts, sums, z, idx, decay, eps):
  """float64 NumPy transcription of appendix A.1 with Laplace smoothing."""
  counts, sums, z = (np.asarray(a, np.float64) for a in (counts, sums, z))
  k = len(counts)
  n_i = np.bincount(idx, minlength=k).astype(np.float64)
  s_i = np.zeros_like(sums)
  for j, i in enumerate(idx):
    s_i[i] += z[j]
  counts = decay * counts + (1 - decay) * n_i
  sums = decay * sums + (1 - decay) * s_i
  n = counts.sum()
  smoothed = (counts + eps) / (n + k * eps) * n
  return sums / smoothed[:, None], counts, sums


def test_ema_update_matches_numpy_reference():
  rng = np.random.default_rng(0)
  k, d = 5, 3
  counts = rng.uniform(0, 3, k).astype(np.float32)
  counts[4] = 0.0  # a code with no history and no assignment: smoothing keeps it finite
  sums = rng.normal(size=(k, d)).astype(np.float32)
  z = rng.normal(size=(11, d)).astype(np.float32)
  idx = rng.integers(0, 4, 11).astype(np.int32)
  got = quantizer.ema_update(counts, sums, z, idx, decay=0.9, epsilon=1e-3)
  want = _ema_reference(counts, sums, z, idx, 0.9, 1e-3)
  for g, w in zip(got, want):
    np.testing.assert_allclose(np.asarray(g), w, rtol=1e-5, atol=1e-6)
  assert np.all(np.isfinite(np.asarray(got[0])))


@pytest.mark.two_devices
def test_ema_update_psum_over_devices_equals_whole_batch():
  rng = np.random.default_rng(1)
  counts, sums = quantizer.ema_init(rng.normal(size=(6, 4)).astype(np.float32))
  z = rng.normal(size=(2, 10, 4)).astype(np.float32)
  idx = rng.integers(0, 6, (2, 10)).astype(np.int32)
  f = functools.partial(quantizer.ema_update, decay=0.99, epsilon=1e-5, axis_name=AXIS)
  got = jax.pmap(f, axis_name=AXIS, in_axes=(None, None, 0, 0))(counts, sums, z, idx)
  want = _ema_reference(counts, sums, z.reshape(-1, 4), idx.reshape(-1), 0.99, 1e-5)
  for g, w in zip(got, want):
    np.testing.assert_array_equal(np.asarray(g[0]), np.asarray(g[1]))
    np.testing.assert_allclose(np.asarray(g[0]), w, rtol=1e-5, atol=1e-6)


def test_ema_init_reproduces_the_codebook():
  cb = np.random.default_rng(2).normal(size=(7, 3)).astype(np.float32)
  counts, sums = quantizer.ema_init(cb)
  new, _, _ = quantizer.ema_update(counts, sums, np.zeros((0, 3), np.float32),
                                   np.zeros((0,), np.int32), decay=0.5, epsilon=1e-5)
  np.testing.assert_allclose(np.asarray(new), cb, rtol=1e-5)  # nothing chosen: unchanged


@pytest.mark.parametrize('decay,eps', [(0.0, 1e-5), (1.0, 1e-5), (1.5, 1e-5), (0.99, 0.0),
                                       (0.99, -1.0)])
def test_ema_arguments_are_validated(decay, eps):
  with pytest.raises(ValueError):
    quantizer.check_ema_args(decay, eps)
  config = load_config('fashion_mnist:tiny')
  override(config, 'ema_decay', decay)
  override(config, 'ema_epsilon', eps)
  with pytest.raises(UserError, match='EMA'):
    vqvae_training.check_config(config)


@pytest.mark.parametrize('key,value', [('codebook', 'ema2'), ('codebook_init', 'knn'),
                                       ('restart_after', -1), ('codebook_init_batches', 0)])
def test_codebook_config_is_validated(key, value):
  config = load_config('fashion_mnist:tiny')
  override(config, key, value)
  with pytest.raises(UserError, match=key):
    vqvae_training.check_config(config)


def test_default_recipe_keeps_the_codebook_healthy_and_paper_keeps_the_papers():
  config = load_config('fashion_mnist')
  assert (config.codebook, config.restart_after, config.codebook_init) == ('ema', 20, 'data')
  assert (config.ema_decay, config.ema_epsilon) == (0.99, 1e-5)
  paper = load_config('fashion_mnist:paper')
  assert (paper.codebook, paper.restart_after, paper.codebook_init) == ('loss', 0, 'uniform')


def test_restart_dead_codes_unit():
  cb = np.arange(12, dtype=np.float32).reshape(6, 2)
  unused = np.array([0, 2, 1, 2, 0, 5], np.int32)
  counts = np.array([3, 0, 0, 1, 0, 0])
  cand = 100.0 + np.arange(8, dtype=np.float32).reshape(4, 2)
  new, unused2, dead = quantizer.restart_dead_codes(cb, unused, counts, cand,
                                                    jax.random.key(0), restart_after=3)
  np.testing.assert_array_equal(np.asarray(dead), [False, True, False, False, False, True])
  np.testing.assert_array_equal(np.asarray(unused2), [0, 0, 2, 0, 1, 0])
  new = np.asarray(new)
  np.testing.assert_array_equal(new[~np.asarray(dead)], cb[~np.asarray(dead)])
  rows = [tuple(r) for r in new[[1, 5]]]
  assert len(set(rows)) == 2 and all(r in {tuple(c) for c in cand} for r in rows)


def test_kmeans_finds_separated_clusters():
  rng = np.random.default_rng(3)
  centers = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], np.float32)
  x = (centers[rng.integers(0, 4, 400)] + 0.1 * rng.normal(size=(400, 2))).astype(np.float32)
  got = np.asarray(quantizer.kmeans(x, jax.random.key(0), k=4, iters=10))
  # Every true centre has a centroid next to it (a bad seeding can merge two
  # clusters; this seed does not).
  dist = np.linalg.norm(centers[:, None] - got[None], axis=-1).min(axis=1)
  assert np.all(dist < 0.1), got
  data_only = np.asarray(quantizer.kmeans(x, jax.random.key(0), k=4, iters=0))
  assert all(np.any(np.all(x == r, axis=1)) for r in data_only)  # 'data': actual samples


# --- The train step under pmap, both codebook variants --------------------------------------

def _images(n, size=8, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 1)).astype(np.uint8)


# One model, one optimiser and one compiled step per (kind, devices), shared by the
# tests (compiling dominates their run time). lr = 0: only the codebook, its
# statistics and BatchNorm move, so a batch seen twice gives the same encoder outputs.
_CONFIG = load_config('fashion_mnist:tiny')
_MODEL = runs.make_model(_CONFIG, axis_name=AXIS)
_TX = optax.sgd(0.0)
_STEPS = {}


def _state(kind):
  state = states.create_train_state(jax.random.key(0), _MODEL, (8, 8, 1), 1e-3, codebook=kind)
  return states.TrainState.create(apply_fn=state.apply_fn, params=state.params,
                                    batch_stats=state.batch_stats,
                                    codebook_state=state.codebook_state, tx=_TX)


def _step(kind, n_dev=2):
  """pmap'd train step with dead-code restart after 1 unused step."""
  if (kind, n_dev) not in _STEPS:
    opts = codebook_lib.CodebookOptions(kind=kind, restart_after=1, seed=3)
    _STEPS[kind, n_dev] = jax.pmap(
        functools.partial(vqvae_training.train_step, model=_MODEL, beta=1.0, codebook=opts),
        axis_name=AXIS, devices=jax.local_devices()[:n_dev])
  return _STEPS[kind, n_dev]


def _run(kind, rstate, batches, n_dev=2):
  metrics = []
  for x in batches:
    shaped = x.reshape((n_dev, -1) + x.shape[1:])
    rstate, m = _step(kind, n_dev)(rstate, shaped, np.zeros(shaped.shape[:2], np.int32))
    metrics.append(jax.device_get(jax.tree.map(lambda a: a[0], m)))
  return rstate, metrics


def _first(tree):
  return jax.device_get(jax.tree.map(lambda a: a[0], tree))


@pytest.mark.two_devices
@pytest.mark.parametrize('kind', KINDS)
def test_replicas_hold_identical_codebooks(kind):
  assert jax.local_device_count() == 2
  state = _state(kind)
  # Different data on each device (the two halves of each batch differ).
  rstate, metrics = _run(kind, replicate(state), [_images(8, seed=s) for s in range(3)])
  assert sum(m['restarts'] for m in metrics) > 0  # restarts happened (K=16 > codes used)
  host = jax.device_get(rstate)
  for leaf in jax.tree.leaves((host.params, host.codebook_state, host.batch_stats)):
    np.testing.assert_array_equal(leaf[0], leaf[1])
  assert not np.array_equal(host.params['codebook'][0], state.params['codebook'])


@pytest.mark.two_devices
def test_ema_pmap_two_devices_equals_one_device():
  state = _state('ema')
  batches = [_images(8, seed=s) for s in range(2)]
  one = _first(_run('ema', replicate(state, jax.local_devices()[:1]), batches, 1)[0])
  two = _first(_run('ema', replicate(state), batches, 2)[0])
  for key in ('ema_counts', 'ema_sums'):
    np.testing.assert_allclose(one.codebook_state[key], two.codebook_state[key],
                               rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(one.codebook_state['unused'], two.codebook_state['unused'])
  np.testing.assert_allclose(one.params['codebook'], two.params['codebook'], rtol=1e-5, atol=1e-6)


@pytest.mark.two_devices
def test_ema_state_changes_only_in_training():
  state = _state('ema')
  rstate = replicate(state)
  before = jax.device_get(rstate)
  # Evaluation and encoding leave every part of the state alone.
  p_eval = jax.pmap(functools.partial(vqvae_training.eval_step, model=_MODEL, beta=1.0, ema=True),
                    axis_name=AXIS)
  x = _images(8).reshape(2, 4, 8, 8, 1)
  p_eval(rstate, x, np.ones((2, 4), bool))
  plain = runs.make_model(_CONFIG)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  _, mutated = plain.apply(variables, vqvae.to_float(x[0]), method='encode', mutable=True)
  for a, b in zip(jax.tree.leaves(mutated), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(a, b)  # encode changes no variable
  for a, b in zip(jax.tree.leaves(jax.device_get(rstate)), jax.tree.leaves(before)):
    np.testing.assert_array_equal(a, b)
  # One training step moves the EMA statistics and the codebook.
  after = _first(_run('ema', rstate, [_images(8)])[0])
  for key in ('ema_counts', 'ema_sums'):
    assert not np.allclose(after.codebook_state[key], state.codebook_state[key])
  assert not np.allclose(after.params['codebook'], state.params['codebook'])


@pytest.mark.two_devices
@pytest.mark.parametrize('kind', KINDS)
def test_dead_code_is_restarted_and_then_used(kind):
  state = _state(kind)
  params = dict(state.params)
  far = np.asarray(params['codebook']).copy()
  far[5] = 1e3  # code 5 is never the nearest
  params['codebook'] = jnp.asarray(far)
  cb_state = dict(state.codebook_state)
  if kind == 'ema':
    cb_state['ema_counts'], cb_state['ema_sums'] = quantizer.ema_init(far)
  state = state.replace(params=params, codebook_state=cb_state)
  x = _images(8, seed=1)
  rstate, metrics = _run(kind, replicate(state), [x])
  assert metrics[0]['counts'][5] == 0 and metrics[0]['restarts'] > 0
  new = _first(rstate.params['codebook'])[5]
  assert np.abs(new).max() < 1e2  # re-initialised from an encoder output
  # lr = 0: the same batch gives the same encoder outputs, so the restarted
  # code is now the nearest for the vector it was copied from.
  _, metrics = _run(kind, rstate, [x])
  assert metrics[0]['counts'][5] > 0


def test_summarize_reports_restarts_and_usage():
  counts = np.array([4, 0, 4, 0], np.int32)
  out = vqvae_training.summarize({'loss': np.float32(6.0), 'counts': counts,
                            'restarts': np.int32(3)}, 3)
  assert out['restarts'] == 3 and out['loss'] == 2.0
  assert out['usage'] == 0.5 and out['perplexity'] == pytest.approx(2.0)


@pytest.mark.parametrize('init', ['data', 'kmeans'])
def test_init_codebook_from_first_batches(init):
  from vqvae_jax import data  # pylint: disable=g-import-not-at-top
  config = load_config('fashion_mnist:tiny')
  override(config, 'codebook', 'ema')
  override(config, 'codebook_init', init)
  override(config, 'codebook_init_batches', 2)
  model = runs.make_model(config)
  state = states.create_train_state(jax.random.key(0), model, (8, 8, 1), 1e-3, codebook='ema')
  ds = data.Dataset(images=_images(40), labels=np.zeros(40, np.int32), class_names=('a',))
  a = codebook_lib.init_codebook(config, state, model, ds)
  cb = np.asarray(a.params['codebook'])
  if init == 'kmeans':  # deterministic
    b = codebook_lib.init_codebook(config, state, model, ds)
    np.testing.assert_array_equal(cb, np.asarray(b.params['codebook']))
  np.testing.assert_array_equal(np.asarray(a.codebook_state['ema_sums']), cb)
  assert len(np.unique(cb, axis=0)) == config.k and np.abs(cb).max() > 1.0 / config.k
