"""Train step (pmap), loss decrease, checkpoints, kill-and-resume, CLI errors."""
import functools
import json
import os
import signal
import subprocess
import sys
import time

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fixtures import folder_snapshot, write_mnist_folder
from vqvae_jax import optim, runs, states
from vqvae_jax.checkpoints import Checkpointer
from vqvae_jax.cli.config_files import load_config, override
from vqvae_jax.train import vqvae as vqvae_training
from vqvae_jax.train.loop import AXIS, replicate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_state(image_shape=(8, 8, 1), lr=1e-3):
  config = load_config('fashion_mnist:tiny')
  model = runs.make_model(config, axis_name=AXIS)
  state = states.create_train_state(jax.random.key(0), model, image_shape, lr)
  return model, state


def _images(n, size=8, channels=1, seed=0):
  """Structured images: a bright square at a random place on a dark field."""
  rng = np.random.default_rng(seed)
  x = np.full((n, size, size, channels), 20, np.uint8)
  for i in range(n):
    r, c = rng.integers(0, size - 3, 2)
    x[i, r:r + 3, c:c + 3] = 230
  return x


def _pmap_steps(model, state, batches, devices):
  step = jax.pmap(functools.partial(vqvae_training.train_step, model=model, beta=1.0),
                  axis_name=AXIS, devices=devices)
  rstate = replicate(state, devices)
  n = len(devices)
  for images in batches:
    shaped = images.reshape((n, -1) + images.shape[1:])
    rstate, metrics = step(rstate, shaped, np.zeros(shaped.shape[:2], np.int32))
  return jax.device_get(jax.tree.map(lambda x: x[0], rstate)), metrics


@pytest.mark.two_devices
def test_pmap_two_devices_equals_one_device_whole_batch():
  assert jax.local_device_count() == 2, 'conftest.py forces 2 CPU devices'
  model, state = _tiny_state()
  # Plain SGD: Adam would turn float noise in the (mathematically zero) gradients
  # of conv biases followed by BatchNorm into full-size steps of either sign.
  state = states.TrainState.create(apply_fn=state.apply_fn, params=state.params,
                                     batch_stats=state.batch_stats, tx=optax.sgd(0.1))
  batches = [_images(8, seed=s) for s in range(3)]
  one, m1 = _pmap_steps(model, state, batches, jax.local_devices()[:1])
  two, m2 = _pmap_steps(model, state, batches, jax.local_devices()[:2])
  # float32 reductions in another order: tolerance 2e-5 absolute on parameters
  # of order 0.1, after 3 SGD steps.
  for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(two.params)):
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-5)
  for a, b in zip(jax.tree.leaves(one.batch_stats), jax.tree.leaves(two.batch_stats)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(m1['loss'][0], m2['loss'][0], rtol=1e-5)
  np.testing.assert_array_equal(m1['counts'][0], m2['counts'][0])
  assert int(m1['counts'][0].sum()) == 8 * 2 * 2
  # and the parameters did move
  moved = [np.abs(a - b).max() for a, b in zip(jax.tree.leaves(one.params),
                                               jax.tree.leaves(state.params))]
  assert max(moved) > 1e-4


def test_tiny_training_lowers_the_loss():
  model, state = _tiny_state(lr=3e-3)
  step = jax.pmap(functools.partial(vqvae_training.train_step, model=model, beta=1.0),
                  axis_name=AXIS, devices=jax.local_devices()[:1])
  rstate = replicate(state, jax.local_devices()[:1])
  x = _images(16)[None]
  losses = []
  for _ in range(40):
    rstate, m = step(rstate, x, np.zeros((1, 16), np.int32))
    losses.append(float(m['recon'][0]))
  assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


def test_checkpoint_round_trip_gives_identical_loss(tmp_path):
  model, state = _tiny_state()
  state, _ = _pmap_steps(model, state, [_images(8)], jax.local_devices()[:1])
  x = _images(4, seed=7)
  plain = runs.make_model(load_config('fashion_mnist:tiny'))  # no pmap axis
  loss = functools.partial(vqvae_training.loss_fn, model=plain, beta=1.0)
  want = loss(state.params, state.batch_stats, x)[0]
  ckpt = Checkpointer(str(tmp_path / 'ck'))
  ckpt.save(1, {'state': flax.serialization.to_state_dict(state)}, {'kind': 'test'})
  ckpt.wait()
  _, fresh = _tiny_state()
  saved, meta = ckpt.restore(1, {'state': flax.serialization.to_state_dict(fresh)})
  restored = flax.serialization.from_state_dict(fresh, saved['state'])
  got = loss(restored.params, restored.batch_stats, x)[0]
  assert float(got) == float(want)
  assert meta == {'kind': 'test'}
  assert int(restored.step) == 1


def _run(args, env, **kw):
  return subprocess.run([sys.executable, os.path.join(REPO, 'train_vqvae.py')] + args,
                        env=env, capture_output=True, text=True, **kw)


def _env(tmp_path):
  env = dict(os.environ)
  env['VQVAE_CACHE_DIR'] = str(tmp_path / 'cache')
  env['PYTHONPATH'] = REPO
  return env


def _final_params(workdir):
  _, variables, meta = runs.restore_vqvae(str(workdir), which='latest')
  return variables, meta


def test_cli_run_outputs_and_kill_resume_equals_uninterrupted(tmp_path):
  """SIGKILL mid-run, rerun the same command: same final parameters, with a
  warm-up + cosine schedule, gradient clipping and AdamW (their states resume)."""
  data_dir = tmp_path / 'mnist'
  write_mnist_folder(str(data_dir), n_train=140, n_test=20)  # valid 14, train 126
  env = _env(tmp_path)
  args = ['--config', 'configs/mnist.py:tiny', '--dataset', 'mnist',
          '--data-folder', str(data_dir), '--set', 'image_size=28', '--batch-size', '8',
          '--num-epochs', '2', '--set', 'ckpt_every=3', '--set', 'lr_schedule=cosine',
          '--set', 'warmup_steps=4', '--set', 'final_lr_fraction=0.1',
          '--set', 'grad_clip=0.5', '--set', 'weight_decay=1e-4']
  full = _run(args + ['--output-folder', str(tmp_path / 'full')], env, timeout=300, cwd=REPO)
  assert full.returncode == 0, full.stderr[-3000:]

  out = tmp_path / 'full'
  config = json.load(open(out / 'config.json'))
  assert config['batch_size'] == 8 and config['dataset'] == 'mnist'
  rows = [json.loads(l) for l in open(out / 'metrics.jsonl')]
  assert [r['epoch'] for r in rows if r['split'] == 'valid'] == [1, 2]
  assert all(np.isfinite(r['loss']) for r in rows)
  assert {'perplexity', 'usage'} <= set(rows[-1])
  assert os.listdir(out / 'tensorboard')
  assert sorted(os.listdir(out / 'reconstructions')) == ['epoch_001.png', 'epoch_002.png']
  from PIL import Image  # pylint: disable=g-import-not-at-top
  grid = np.asarray(Image.open(out / 'reconstructions' / 'epoch_002.png'))
  # 8 test images, 2 per row: 4 rows of originals over 4 rows of reconstructions
  assert grid.shape == (8 * 30 + 2, 2 * 30 + 2)

  # Killed run: SIGKILL as soon as the first checkpoint exists, then rerun.
  killed = tmp_path / 'killed'
  proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'train_vqvae.py')] + args +
                          ['--output-folder', str(killed)], env=env, cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    steps = [d for d in os.listdir(killed / 'checkpoints')] if (killed / 'checkpoints').exists() else []
    if any(d.isdigit() and int(d) >= 3 for d in steps):
      break
    time.sleep(0.05)
  assert proc.poll() is None, 'the run finished before it could be killed'
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  resumed = _run(args + ['--output-folder', str(killed)], env, timeout=300, cwd=REPO)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'resuming from step' in resumed.stderr

  want, meta_full = _final_params(out)
  got, meta_killed = _final_params(killed)
  assert meta_full['step'] == meta_killed['step'] == 2 * (126 // 8)
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    np.testing.assert_array_equal(a, b)
  # The metrics log has no duplicated steps after the replay.
  steps = [(r['step'], r['split']) for r in map(json.loads, open(killed / 'metrics.jsonl'))]
  assert len(steps) == len(set(steps))


def _main_exit(capsys, argv):
  import train_vqvae  # pylint: disable=g-import-not-at-top
  with pytest.raises(SystemExit) as e:
    train_vqvae.main(argv)
  err = capsys.readouterr().err
  return e.value.code, err


def test_missing_data_folder_is_a_clear_error(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv('VQVAE_CACHE_DIR', str(tmp_path / 'cache'))
  code, err = _main_exit(capsys, ['--dataset', 'mnist', '--data-folder', str(tmp_path / 'nope'),
                                  '--output-folder', str(tmp_path / 'o'), '--config',
                                  'mnist:tiny'])
  assert code == 2
  assert err.startswith('error: ') and 'Traceback' not in err
  assert 'train-images-idx3-ubyte' in err


@pytest.mark.two_devices
def test_batch_not_divisible_by_devices_is_a_clear_error(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv('VQVAE_CACHE_DIR', str(tmp_path / 'cache'))
  write_mnist_folder(str(tmp_path / 'd'), n_train=60, n_test=10)
  code, err = _main_exit(capsys, ['--dataset', 'mnist', '--data-folder', str(tmp_path / 'd'),
                                  '--output-folder', str(tmp_path / 'o'), '--config',
                                  'mnist:tiny', '--batch-size', '7'])
  assert code == 2 and 'not divisible by the number of devices (2)' in err
  assert 'Traceback' not in err


def test_unknown_override_and_incompatible_resume(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv('VQVAE_CACHE_DIR', str(tmp_path / 'cache'))
  code, err = _main_exit(capsys, ['--output-folder', str(tmp_path / 'o'), '--config',
                                  'mnist:tiny', '--set', 'hiden_size=3'])
  assert code == 2 and "unknown config key 'hiden_size'" in err
  write_mnist_folder(str(tmp_path / 'd'), n_train=60, n_test=10)
  base = ['--dataset', 'mnist', '--data-folder', str(tmp_path / 'd'), '--output-folder',
          str(tmp_path / 'o'), '--config', 'mnist:tiny', '--max-steps', '2', '--no-progress']
  import train_vqvae  # pylint: disable=g-import-not-at-top
  train_vqvae.main(base)
  before = folder_snapshot(str(tmp_path / 'o'))
  code, err = _main_exit(capsys, base + ['--k', '32'])
  assert code == 2 and 'k: saved 16, now 32' in err
  # another optimiser state tree (a schedule) cannot resume this one
  code, err = _main_exit(capsys, base + ['--set', 'lr_schedule=cosine'])
  assert code == 2 and 'optimiser: saved constant lr' in err and 'Traceback' not in err
  # the refused run left the saved run as it was, config.json included
  assert json.load(open(tmp_path / 'o' / 'config.json'))['k'] == 16
  assert folder_snapshot(str(tmp_path / 'o')) == before
  (tmp_path / 'afile').write_text('x')
  for out in (tmp_path / 'afile', tmp_path / 'afile' / 'sub'):
    code, err = _main_exit(capsys, base[:4] + ['--output-folder', str(out)] + base[6:])
    assert code == 2 and 'is a file' in err and 'Traceback' not in err


def test_codebook_sizes_the_file_format_cannot_store_are_refused(tmp_path, capsys, monkeypatch):
  """The .vqz format stores 2 <= K <= 65535: anything else is refused at config
  time, before any data is read or folder created."""
  monkeypatch.setenv('VQVAE_CACHE_DIR', str(tmp_path / 'cache'))
  for k in ('1', '65536', '100000'):
    code, err = _main_exit(capsys, ['--output-folder', str(tmp_path / 'o'), '--config',
                                    'mnist:tiny', '--k', k])
    assert code == 2 and 'k must be between 2 and 65535' in err and f'got {k}' in err
    assert 'Traceback' not in err and len(err.strip().splitlines()) == 1
  assert not (tmp_path / 'o').exists()
  config = load_config('mnist:tiny')
  for k in (2, 65535):  # the limits themselves are fine
    config.k = k
    vqvae_training.check_config(config)


def test_non_finite_loss_stops_with_a_clear_error(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv('VQVAE_CACHE_DIR', str(tmp_path / 'cache'))
  write_mnist_folder(str(tmp_path / 'd'), n_train=60, n_test=10)
  code, err = _main_exit(capsys, ['--dataset', 'mnist', '--data-folder', str(tmp_path / 'd'),
                                  '--output-folder', str(tmp_path / 'o'), '--config',
                                  'mnist:tiny', '--lr', '1e38', '--max-steps', '6',
                                  '--set', 'log_every=1', '--no-progress'])
  assert code == 2 and 'non-finite' in err and 'try a lower --lr' in err
  assert 'Traceback' not in err and 'step None' not in err


def test_sigterm_saves_a_checkpoint_and_the_rerun_resumes_from_it(tmp_path):
  data_dir = tmp_path / 'mnist'
  write_mnist_folder(str(data_dir), n_train=140, n_test=20)
  env = _env(tmp_path)
  args = ['--config', 'configs/mnist.py:tiny', '--dataset', 'mnist', '--data-folder',
          str(data_dir), '--set', 'image_size=28', '--batch-size', '8', '--num-epochs', '50',
          '--set', 'ckpt_every=100000', '--set', 'log_every=1', '--no-progress',
          '--output-folder', str(tmp_path / 'o')]
  proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'train_vqvae.py')] + args,
                          env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  metrics = tmp_path / 'o' / 'metrics.jsonl'
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if metrics.exists() and any('"train"' in l for l in open(metrics)):
      break
    time.sleep(0.1)
  assert proc.poll() is None, 'the run ended before it could be stopped'
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=240)
  assert proc.returncode == 0, err[-3000:]
  assert 'saving a checkpoint and stopping' in err and 'Traceback' not in err
  steps = [int(d) for d in os.listdir(tmp_path / 'o' / 'checkpoints') if d.isdigit()]
  assert len(steps) == 1 and 0 < steps[0] < 50 * (126 // 8)  # saved where it stopped
  again = _run(args + ['--max-steps', str(steps[0] + 1)], env, timeout=300, cwd=REPO)
  assert again.returncode == 0, again.stderr[-3000:]
  assert f'resuming from step {steps[0]}' in again.stderr


def test_checkpoint_of_an_older_version_restores_and_resumes(tmp_path, capsys, monkeypatch):
  """A run saved before the optimiser and codebook keys existed (plain Adam, the
  paper's codebook, no `codebook` / `lr_schedule` / ... in its config) restores,
  is refused by the new EMA default with a hint, and resumes as the paper recipe."""
  monkeypatch.setenv('VQVAE_CACHE_DIR', str(tmp_path / 'cache'))
  write_mnist_folder(str(tmp_path / 'd'), n_train=60, n_test=10)  # train 54: 6 steps of 8
  config = load_config('mnist:tiny')
  override(config, 'data_folder', str(tmp_path / 'd'))
  new_keys = set(optim.DEFAULTS) | {'codebook'}
  old = {k: v for k, v in config.to_dict().items() if k not in new_keys}
  old.update(restart_after=0, codebook_init='uniform')
  # The old state: parameters, BatchNorm statistics, steps-unused counters, optax.adam.
  model = runs.make_model(config)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), train=False)
  state = states.TrainState.create(
      apply_fn=model.apply, params=variables['params'], batch_stats=variables['batch_stats'],
      codebook_state={'unused': jnp.zeros((config.k,), jnp.int32)}, tx=optax.adam(config.lr))
  state = state.apply_gradients(grads=jax.tree.map(jnp.ones_like, state.params))
  z = np.zeros((), np.float32)
  sums = {'loss': z, 'recon': z, 'codebook': z, 'commitment': z,
          'counts': np.zeros((config.k,), np.int32), 'restarts': np.zeros((), np.int32)}
  workdir = tmp_path / 'old'
  ckpt = Checkpointer(str(workdir / 'checkpoints'))
  ckpt.save(1, {'state': flax.serialization.to_state_dict(state), 'epoch_sums': sums},
            {'kind': 'vqvae', 'config': old, 'class_names': [str(i) for i in range(10)],
             'image_shape': [28, 28, 1], 'step': 1, 'epoch': 0, 'valid': None})
  ckpt.wait()
  ckpt.close()
  _, restored, meta = runs.restore_vqvae(str(workdir))
  assert meta['step'] == 1
  for a, b in zip(jax.tree.leaves(restored['params']), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)
  base = ['--dataset', 'mnist', '--data-folder', str(tmp_path / 'd'), '--output-folder',
          str(workdir), '--config', 'mnist:tiny', '--max-steps', '3', '--no-progress']
  code, err = _main_exit(capsys, base)
  assert code == 2 and "codebook: saved 'loss', now 'ema'" in err and ':paper' in err
  import train_vqvae  # pylint: disable=g-import-not-at-top
  result = train_vqvae.run(base + ['--codebook', 'loss'])
  assert result['step'] == 3
  assert 'resuming from step 1' in capsys.readouterr().err
