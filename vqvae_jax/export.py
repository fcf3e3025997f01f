"""Exports trained run folders as pretrained folders (`vqvae_jax.pretrained`).

`python -m vqvae_jax export` calls `export`: the best checkpoint's inference
variables, the run's config, and the test metrics of the folder as shipped
(`evaluation`, run on the written folders), so it reports what it was measured
to do. With dtype 'float16' the arrays are stored at half size; the float32
model's test PSNR is recorded beside the shipped one's ('float32_psnr').
"""
from __future__ import annotations

import dataclasses
import io
import os
import shutil

import numpy as np

from vqvae_jax import checkpoints, data, evaluation, fileio, pretrained, runs
from vqvae_jax.codec import compression

SLICE = 500  # test images whose PSNR is recorded for a quick check of shipped weights


def slice_psnr(model, variables, ds, n: int = SLICE) -> dict:
  """Mean PSNR (dB) of the first `n` images of `ds`."""
  part = dataclasses.replace(ds, images=ds.images[:n], labels=ds.labels[:n],
                             episodes=None if ds.episodes is None else ds.episodes[:n])
  metrics, _ = evaluation.reconstruction_metrics(model, variables, part)
  return {'split': ds.split, 'n': len(part), 'psnr': metrics['psnr']}


def _coder_file(prior_dir, prior, params, prior_meta, dtype, staging, vq) -> str:
  """The integer prior file to ship: the run's for float32; for float16 one made
  from the rounded parameters, calibrated on (and given the label table of) the
  training split's grids as the shipped VQ-VAE codes them. `vq`: (model,
  shipped variables, meta, data_folder)."""
  grid = prior_meta['grid']
  if dtype == 'float32':
    compression.load_coder(prior_dir, prior, params, grid)  # made if missing
    return os.path.join(prior_dir, pretrained.CODER_FILE)
  model, variables, meta, data_folder = vq
  ds = runs.load_split(runs.run_config(meta, data_folder), 'train')
  codes = evaluation.encode_split(model, variables, ds)
  work = os.path.join(staging, 'coder')
  buf = io.BytesIO()
  np.savez(buf, codes=codes, labels=data.relabel(ds, prior_meta['class_names']))
  fileio.atomic_write(os.path.join(work, 'codes', 'train.npz'), buf.getvalue())
  compression.load_coder(work, prior, pretrained.as_stored(params, dtype), grid)
  return os.path.join(work, pretrained.CODER_FILE)


def _swap_in(staged: str, out_dir: str) -> None:
  old = os.path.join(os.path.dirname(staged), os.path.basename(out_dir) + '.old')
  if os.path.exists(out_dir):
    os.replace(out_dir, old)
  os.replace(staged, out_dir)
  shutil.rmtree(old, ignore_errors=True)


def export(model_dir: str, out_dir: str, *, prior_dir: str | None = None,
           data_folder: str | None = None, per_class: int = 100,
           dtype: str = 'float32') -> dict:
  """Exports the best checkpoint of a VQ-VAE run to `out_dir` and, with
  `prior_dir`, its prior to `out_dir + '-prior'`, the float32 arrays stored as
  `dtype` ('float32' or 'float16'), each with the test metrics of the folder as
  written (`evaluation.evaluate`, class consistency from `per_class` samples a
  class) and the PSNR of its first SLICE test images. Both folders are built in
  a staging folder beside `out_dir` and moved in only when complete. Returns
  the evaluation."""
  model, variables, meta = runs.restore_vqvae(model_dir)
  ds = runs.load_split(runs.run_config(meta, data_folder), 'test')
  shipped = pretrained.as_stored(variables, dtype)
  parent, name = os.path.split(os.path.abspath(out_dir))
  staging = os.path.join(parent, f'.{name}.export')
  shutil.rmtree(staging, ignore_errors=True)
  os.makedirs(staging)
  vq_stage, prior_stage = os.path.join(staging, name), os.path.join(staging, name + '-prior')
  pretrained.save(vq_stage, 'vqvae', dict(meta, config=dict(meta['config'], data_folder='')),
                  variables, dtype=dtype)
  if prior_dir:
    prior, params, prior_meta = runs.restore_prior(prior_dir)
    runs.check_prior_matches(prior_meta, variables, prior_dir, model_dir)
    coder = _coder_file(prior_dir, prior, params, prior_meta, dtype, staging,
                        (model, shipped, meta, data_folder))
    prior_meta = dict(prior_meta, vqvae_fingerprint=checkpoints.vqvae_fingerprint(shipped),
                      config=dict(prior_meta['config'], model=f'../{name}', data_folder=''))
    pretrained.save(prior_stage, 'prior', prior_meta, {'params': params}, coder_file=coder,
                    dtype=dtype)
  result = evaluation.evaluate_restored(
      model, shipped, meta, ds, model_dir=vq_stage, prior_dir=prior_stage if prior_dir else None,
      data_folder=data_folder, consistency_per_class=per_class if prior_dir else 0)
  kept = {k: v for k, v in result.items() if k not in ('model', 'prior', 'class_consistency')}
  part = slice_psnr(model, shipped, ds)
  if dtype != 'float32':
    kept['float32_psnr'] = evaluation.reconstruction_metrics(model, variables, ds)[0]['psnr']
    part['float32_psnr'] = slice_psnr(model, variables, ds)['psnr']
  pretrained.set_results(vq_stage, {'test': kept, 'slice': part})
  if prior_dir:
    consistency = dict(result['class_consistency'] or {})
    consistency.pop('classifier', None)  # a local cache path
    pretrained.set_results(prior_stage, {
        'test': {k: v for k, v in result['prior'].items() if k != 'dir'},
        'class_consistency': consistency})
  _swap_in(vq_stage, os.path.abspath(out_dir))
  if prior_dir:
    _swap_in(prior_stage, os.path.abspath(out_dir) + '-prior')
  shutil.rmtree(staging, ignore_errors=True)
  return result
