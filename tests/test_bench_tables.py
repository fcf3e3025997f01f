"""The benchmark readers behind README numbers: epoch_time.py and speed_table.py."""
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
import epoch_time  # noqa: E402
import speed_table  # noqa: E402


def _run(tmp_path, rows, **config):
  (tmp_path / 'config.json').write_text(json.dumps(dict(dataset='d', batch_size=4, log_every=10,
                                                         **config)))
  (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
  return str(tmp_path)


def test_epoch_time_measures_the_overhead_of_whole_epochs(tmp_path):
  """Steps of 0.1 s, epochs of 100 steps; epoch 2 also pays 2 s (evaluation,
  checkpoint, grids) and a checkpoint interval of 1 s, which the step time
  must not include."""
  rows, t = [], 1000.0
  for step in range(10, 301, 10):
    t += 1.0 + (1.0 if step == 160 else 0.0)  # ckpt_every=50: the save inside (150, 160]
    row = {'step': step, 'split': 'train', 'time': t}
    if step == 160:
      row['checkpoint_s'] = 1.0
    if step == 210:  # the loop logs epoch 2's evaluation in the next train row
      row['evaluate_s'] = 1.5
    rows.append(row)
    if step % 100 == 0:
      t += 2.0 if step == 200 else 0.5
      rows.append({'step': step, 'split': 'valid', 'epoch': step // 100, 'time': t})
  out = epoch_time.analyse(_run(tmp_path, rows, ckpt_every=50))
  assert out['step_s_median'] == pytest.approx(0.1)
  e1, e2, e3 = out['epochs']
  assert (e1['from_step'], e1['steps']) == (10, 90)  # from the first logged step
  assert e1['overhead'] == pytest.approx(0.5 / 9, abs=1e-4)  # its 0.5 s evaluation
  assert (e2['epoch'], e2['steps'], e2['steps_x_step_s']) == (2, 100, 10.0)
  assert e2['wall_s'] == pytest.approx(10.0 + 1.0 + 2.0)  # steps + checkpoint + epoch end
  assert e2['overhead'] == pytest.approx(0.3)
  assert e2['outside_steps'] == {'checkpoint_s': 1.0, 'hooks_s': 0.0, 'evaluate_s': 1.5}
  assert e3['overhead'] == pytest.approx(0.05)
  assert out['max_overhead'] == pytest.approx(0.3)


def test_epoch_time_refuses_runs_without_times(tmp_path):
  with pytest.raises(SystemExit, match='no wall-clock'):
    epoch_time.analyse(_run(tmp_path, [{'step': 10, 'split': 'train'}]))


def test_speed_table_rows_come_from_the_json(tmp_path):
  common = {'jax': '0.10.2', 'rounds': 3, 'cpu': 'Some CPU', 'cores': 2, 'avx2': True,
            'avx512': False, 'amx': False, 'date': '2026-12-03',
            'other_procs_cpu_frac': {'jax_rounds': [0.01, 0.002], 'torch_rounds': [0.03]}}
  (tmp_path / 'bench_train_x.json').write_text(json.dumps(dict(
      common, precision='float32', torch_mode='float32 (bench_torch.py --full)',
      jax_imgs_per_s={'28x28x1': 150.0, '32x32x3': 110.0},
      torch_imgs_per_s={'28x28x1': 100.0, '32x32x3': 100.0},
      ratio={'28x28x1': 1.5, '32x32x3': 1.1})))
  (tmp_path / 'bench_train_y.json').write_text(json.dumps(dict(
      common, precision='float32', cpu_family_model='26/2', host_steal_cpu_frac=0.125,
      jax_imgs_per_s={'28x28x1': 50.0}, torch_imgs_per_s={'28x28x1': 100.0},
      ratio={'28x28x1': 0.5})))
  (tmp_path / 'bench_sampling_x.json').write_text(json.dumps(dict(
      common, jax_fast_s=0.3, torch_s=6.0, speedup_fast_vs_torch=20.0,
      prior_train_imgs_per_s={'jax': {'7x7': 10.0, '8x8': 9.0}, 'torch': {'7x7': 5.0, '8x8': 9.0},
                              'ratio': {'7x7': 2.0, '8x8': 1.0}})))
  step = {'jax_step_gflops': 150.0, 'torch_step_gflops': 100.0,
          'jax_fraction_of_best_jax_dot': 0.5}
  (tmp_path / 'roofline_x.json').write_text(json.dumps(dict(
      common, jax_gflops={'square2048': 300.0, 'conv1x1': 250.0, 'conv3x3_lax': 280.0},
      torch_gflops={'square2048': 200.0, 'conv3x3': 400.0}, best_jax_dot_gflops=300.0,
      vqvae_step={'28x28x1': step}, prior_step={'8x8': step})))
  text = speed_table.table(str(tmp_path))
  assert ('| Some CPU (2 cores, avx2) | 300 / 280 (PyTorch 200 / 400) | 150 vs 100 (50% of 300) '
          '| – | – | 150 vs 100 (50% of 300) | 3.0% |') in text
  assert ('| Some CPU (2 cores, avx2) | float32 (PyTorch float32, full plan) | 150.0 vs 100.0 = '
          '**1.50×** |') in text
  assert '110.0 vs 100.0 = **1.10×** | 3 | 3.0% | JAX 0.10.2, 2026-12-03 |' in text
  assert ('| Some CPU (2 cores, avx2, family/model 26/2) | float32 (PyTorch float32, quick '
          'plan) | 50.0 vs 100.0 = **0.50×** | – | 3 | 3.0%; steal 12.5% |') in text
  assert ('| Some CPU (2 cores, avx2) | quick plan | 0.30 s vs 6.00 s = **20.0× faster** | '
          '10.0 vs 5.0 = **2.00×** | 9.0 vs 9.0 = **1.00×**') in text


def test_quality_table_rows_come_from_the_json(tmp_path):
  import quality_table  # pylint: disable=import-outside-toplevel
  (tmp_path / 'fmnist_x.json').write_text(json.dumps({
      'dataset': 'fashion-mnist', 'recipe': 'paper', 'hidden': 256, 'batch': 128,
      'budget_s': 600.0, 'same_steps': {'steps': 500, 'jax_psnr': 21.25, 'torch_psnr': 21.5,
                                        'delta_db': -0.25},
      'same_budget': {'jax_steps': 640, 'torch_steps': 500, 'jax_psnr': 21.875,
                      'torch_psnr': 21.5, 'delta_db': 0.375},
      'torch': {'version': '2.13.0+cpu'}, 'cpu': 'Some CPU', 'cores': 2, 'avx2': True,
      'avx512': True, 'amx': False, 'other_procs_cpu_frac': 0.004, 'jax': '0.10.2',
      'date': '2026-12-03'}))
  text = quality_table.table(str(tmp_path))
  assert ('| fashion-mnist `:paper`, hidden 256, batch 128 | relu(x) + F(relu(x)) '
          "(pytorch-vqvae's in-place ReLU) | 10 min each | 500 steps: 21.25 vs "
          '21.50 dB (**-0.25**) | 640 vs 500 steps: 21.88 vs 21.50 dB (**+0.38**) | '
          'Some CPU (2 cores, avx2/avx512) | 0.4% | JAX 0.10.2, PyTorch 2.13.0+cpu, 2026-12-03 | '
          '`fmnist_x.json` |') in text
  record = json.loads((tmp_path / 'fmnist_x.json').read_text())
  record['torch']['relu_skip'] = False
  (tmp_path / 'fmnist_y.json').write_text(json.dumps(record))
  assert ('| fashion-mnist `:paper`, hidden 256, batch 128 | x + F(relu(x)), as vqvae-jax | '
          '10 min each |') in quality_table.table(str(tmp_path))


def test_device_table_rows_come_from_the_json(tmp_path):
  import device_table  # pylint: disable=import-outside-toplevel
  run = tmp_path / 'gpu-x'
  run.mkdir()
  (run / 'env.json').write_text(json.dumps({'devices': ['gpu: Some GPU'], 'jax': '0.11.2',
                                            'jax-cuda13-plugin': '0.11.2', 'flax': '0.12.8'}))
  (run / 'bench_train.tf32.json').write_text(json.dumps({
      'jax_imgs_per_s': {'32x32x3': 3000.0}, 'peak_fraction': {'32x32x3': 0.0125},
      'rounds': 2, 'steps_per_round': 20, 'date': '2026-12-04'}))
  (run / 'torch.tf32.json').write_text(json.dumps({
      'vqvae_train_imgs_per_s': {'32x32x3': 2000.0, '28x28x1': 1500.0},
      'prior_train_imgs_per_s': {'8x8': 700.0}, 'torch': '2.11.0', 'timed_steps': 20,
      'warmup_steps': 5}))
  (run / 'bench_train.float32.json').write_text('')  # cut by its time limit: no output
  (run / 'summary.json').write_text(json.dumps({'steps': [
      {'step': 'bench_train.float32', 'status': 'timeout'}, {'step': 'check', 'status': 'ok'}]}))
  text = device_table.table(str(tmp_path))
  assert '| VQ-VAE 32x32x3 | TF32 | 3,000 | 2,000 | **1.50x** | 1.25% |' in text
  assert '| VQ-VAE 28x28x1 | TF32 | – | 1,500 | – | – |' in text
  assert '| prior 8x8 | TF32 | – | 700 | – | – |' in text
  assert 'float32 (TF32 off)' not in text  # nothing measured in float32
  assert 'gpu: Some GPU; JAX 0.11.2 (CUDA 13 plugin), flax 0.12.8, PyTorch 2.11.0' in text
  assert 'cut by their time limit: bench_train.float32 ' in text


def test_quality_table_summarises_seeds_against_numpy(tmp_path):
  import statistics  # pylint: disable=import-outside-toplevel
  import quality_table  # pylint: disable=import-outside-toplevel
  main, repeats = tmp_path / 'q', tmp_path / 'q-seeds'
  main.mkdir()
  repeats.mkdir()
  base = {'dataset': 'fashion-mnist', 'recipe': 'paper', 'hidden': 256, 'batch': 128,
          'budget_s': 600.0, 'same_budget': {'jax_steps': 1, 'torch_steps': 1, 'jax_psnr': 8.0,
                                              'torch_psnr': 8.0, 'delta_db': 0.0},
          'torch': {'version': '2.13.0+cpu', 'relu_skip': False}, 'cpu': 'Some CPU',
          'cores': 2, 'avx2': True, 'date': '2026-12-04'}
  deltas = {0: -0.375, 1: 0.125, 2: 0.0625}
  for seed, delta in deltas.items():
    record = dict(base, same_steps={'steps': 400, 'jax_psnr': 19.0 + delta, 'torch_psnr': 19.0,
                                    'delta_db': delta})
    if seed:  # the seed from the record; the first from the default, 0
      record['seed'] = seed
    folder = main if seed == 0 else repeats
    (folder / f'run{seed}.json').write_text(json.dumps(record))
  # Seed 1 rerun elsewhere: listed, but averaged into one sample for the statistic.
  record = dict(base, seed=1, date='2026-12-05', same_steps={
      'steps': 400, 'jax_psnr': 19.375, 'torch_psnr': 19.0, 'delta_db': 0.375})
  (repeats / 'run1b.json').write_text(json.dumps(record))
  text = quality_table.table(str(main))
  samples = [-0.375, (0.125 + 0.375) / 2, 0.0625]
  mean, std = statistics.mean(samples), statistics.stdev(samples)
  assert ('seed 0 -0.38 (Some CPU, 2026-12-04), seed 1 +0.12 (Some CPU, 2026-12-04), '
          'seed 1 +0.38 (Some CPU, 2026-12-05), seed 2 +0.06 (Some CPU, 2026-12-04), '
          f'mean **{mean:+.2f}** ± {std:.2f} (sample std over 3 seeds, a repeated seed '
          'averaged).') in text
  assert f'{mean:+.2f}' == '-0.02' and f'{std:.2f}' == '0.32'  # by hand: 0.3207


def test_roofline_charges_both_libraries_the_same_flops():
  import roofline  # pylint: disable=import-outside-toplevel
  train = {'batch': 128, 'step_gflops': {'28x28x1': 128.0},
           'jax_imgs_per_s': {'28x28x1': 200.0}, 'torch_imgs_per_s': {'28x28x1': 100.0},
           'ratio': {'28x28x1': 2.0}}
  row = roofline.step_rates(train, 'vqvae', best_dot=400.0)['28x28x1']
  # 200 img/s = 1.5625 steps/s of 128 GFLOP = 200 GFLOP/s; PyTorch 100.
  assert row['jax_step_gflops'] == 200.0 and row['torch_step_gflops'] == 100.0
  assert row['jax_fraction_of_best_jax_dot'] == 0.5 and row['ratio_bound'] == 4.0
  sampling = {'prior_train_imgs_per_s': {'jax': {'8x8': 64.0}, 'torch': {'8x8': 32.0},
                                         'ratio': {'8x8': 2.0}, 'step_gflops': {'8x8': 80.0}}}
  row = roofline.step_rates(sampling, 'prior', best_dot=100.0)['8x8']
  assert row['jax_step_gflops'] == 40.0 and row['ratio_bound'] == 5.0
  assert row['measured_ratio'] == 2.0
