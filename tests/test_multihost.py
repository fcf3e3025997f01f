"""Two processes on 127.0.0.1 (1 CPU device each) == one process with 2 devices."""
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from fixtures import write_mnist_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, 'tests', 'multihost_worker.py')
TIMEOUT = 300  # seconds for a whole run: a hung rendezvous fails, it does not hang CI


BN_FED_BIAS = re.compile(r"(DownConv_0|UpConv_0|ResBlock_\d+'\]\['(?!BatchNorm)\w+)'\]\['bias'\]")


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _wait(procs):
  outs = []
  try:
    for p in procs:
      out, _ = p.communicate(timeout=TIMEOUT)
      outs.append(out)
  except subprocess.TimeoutExpired:
    for p in procs:
      p.kill()
    pytest.fail(f'multi-host run did not finish within {TIMEOUT} s (hung rendezvous?)')
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  return outs


def _start(out, devices, argv, env):
  return subprocess.Popen([sys.executable, WORKER, str(out), str(devices)] + argv, env=env,
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _params(path):
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


def test_two_processes_equal_one_process_with_two_devices(tmp_path):
  write_mnist_folder(str(tmp_path / 'd'), n_train=80, n_test=10)
  env = dict(os.environ, VQVAE_CACHE_DIR=str(tmp_path / 'cache'))
  env.pop('XLA_FLAGS', None)
  base = ['--config', 'mnist:tiny', '--dataset', 'mnist', '--data-folder', str(tmp_path / 'd'),
          '--batch-size', '8', '--max-steps', '3', '--set', 'ckpt_every=2', '--no-progress']
  single = _start(tmp_path / 'single.npz', 2, base + ['--output-folder', str(tmp_path / 'one')],
                  env)
  _wait([single])
  port = _free_port()
  multi = [_start(tmp_path / f'p{i}.npz', 1, base + [
      '--output-folder', str(tmp_path / 'two'), '--coordinator-address', f'127.0.0.1:{port}',
      '--num-processes', '2', '--process-id', str(i), '--init-timeout', '60'], env)
           for i in range(2)]
  outs = _wait(multi)

  one, p0, p1 = (_params(tmp_path / f) for f in ('single.npz', 'p0.npz', 'p1.npz'))
  assert int(one['process_count']) == 1
  assert (int(p0['process_index']), int(p1['process_index'])) == (0, 1)
  assert int(p0['process_count']) == int(p1['process_count']) == 2
  assert int(one['step']) == int(p0['step']) == 3
  names = [k for k in one if k.startswith('[')]
  assert len(names) > 10
  compared = 0
  for k in names:
    np.testing.assert_array_equal(p0[k], p1[k])  # the replicas agree exactly
    if BN_FED_BIAS.search(k):
      # A conv bias right before BatchNorm has a gradient that is zero up to
      # float noise; Adam turns that noise into steps of +-lr, so only bound it.
      assert np.all(np.abs(p0[k] - one[k]) <= 2 * 1e-3 * 3 + 1e-6), k
      continue
    # Same global batches, reductions in another order: float tolerance.
    np.testing.assert_allclose(p0[k], one[k], rtol=1e-3, atol=2e-5, err_msg=k)
    compared += 1
  assert compared > 10
  # Checkpoints were written once, to one folder, and restore to the same parameters.
  from vqvae_jax import runs  # pylint: disable=g-import-not-at-top
  _, variables, meta = runs.restore_vqvae(str(tmp_path / 'two'), which='latest')
  assert meta['step'] == 3
  assert np.array_equal(variables['params']['codebook'], p0["['codebook']"])
  # Logs come from process 0 only: one metrics file, one row per (step, split).
  rows = open(tmp_path / 'two' / 'metrics.jsonl').read().splitlines()
  assert len(rows) == len(set(rows))
  assert 'done' not in outs[1]


def test_incomplete_multihost_flags_are_a_clear_error(tmp_path):
  env = dict(os.environ)
  r = subprocess.run([sys.executable, os.path.join(REPO, 'train_vqvae.py'), '--output-folder',
                      str(tmp_path / 'o'), '--num-processes', '2'], env=env, cwd=REPO,
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 2
  assert 'missing: coordinator_address, process_id' in r.stderr and 'Traceback' not in r.stderr


def test_non_integer_process_variables_are_a_clear_error(monkeypatch):
  import argparse  # pylint: disable=g-import-not-at-top
  from vqvae_jax import distributed  # pylint: disable=g-import-not-at-top
  from vqvae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser()
  distributed.add_flags(parser)
  monkeypatch.setenv('VQVAE_COORDINATOR_ADDRESS', '127.0.0.1:1234')
  monkeypatch.setenv('VQVAE_NUM_PROCESSES', 'abc')
  monkeypatch.setenv('VQVAE_PROCESS_ID', '0')
  with pytest.raises(UserError, match="VQVAE_NUM_PROCESSES must be an integer, got 'abc'"):
    distributed.settings(parser.parse_args([]))
  monkeypatch.setenv('VQVAE_NUM_PROCESSES', '2')
  assert distributed.settings(parser.parse_args([])) == {
      'coordinator_address': '127.0.0.1:1234', 'num_processes': 2, 'process_id': 0}
