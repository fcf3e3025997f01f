"""Exports trained run folders as pretrained folders (`vqvae_jax.pretrained`).

`python -m vqvae_jax export` calls `export`: the best checkpoint's inference
variables, the run's config, and its measured test metrics (`evaluation`), so
the shipped folder reports what it was measured to do.
"""
from __future__ import annotations

import dataclasses
import os

from vqvae_jax import evaluation, pretrained, runs
from vqvae_jax.codec import compression

SLICE = 500  # test images whose PSNR is recorded for a quick check of shipped weights


def slice_psnr(model, variables, ds, n: int = SLICE) -> dict:
  """Mean PSNR (dB) of the first `n` images of `ds`."""
  part = dataclasses.replace(ds, images=ds.images[:n], labels=ds.labels[:n],
                             episodes=None if ds.episodes is None else ds.episodes[:n])
  metrics, _ = evaluation.reconstruction_metrics(model, variables, part)
  return {'split': ds.split, 'n': len(part), 'psnr': metrics['psnr']}


def export(model_dir: str, out_dir: str, *, prior_dir: str | None = None,
           data_folder: str | None = None, per_class: int = 100) -> dict:
  """Exports the best checkpoint of a VQ-VAE run to `out_dir` and, with
  `prior_dir`, its prior to `out_dir + '-prior'`, each with its test metrics
  (`evaluation.evaluate`, class consistency from `per_class` samples a class)
  and the PSNR of the first SLICE test images. Returns the evaluation."""
  model, variables, meta = runs.restore_vqvae(model_dir)
  ds = runs.load_split(runs.run_config(meta, data_folder), 'test')
  result = evaluation.evaluate_restored(
      model, variables, meta, ds, model_dir=model_dir, prior_dir=prior_dir,
      data_folder=data_folder, consistency_per_class=per_class if prior_dir else 0)
  kept = {k: v for k, v in result.items() if k not in ('model', 'prior', 'class_consistency')}
  meta = dict(meta, config=dict(meta['config'], data_folder=''))
  pretrained.save(out_dir, 'vqvae', meta, variables,
                  results={'test': kept, 'slice': slice_psnr(model, variables, ds)})
  if prior_dir:
    prior, params, prior_meta = runs.restore_prior(prior_dir)
    runs.check_prior_matches(prior_meta, variables, prior_dir, model_dir)
    compression.load_coder(prior_dir, prior, params, prior_meta['grid'])  # made if missing
    prior_out = out_dir + '-prior'
    rel = os.path.relpath(os.path.abspath(out_dir), os.path.abspath(prior_out))
    prior_meta = dict(prior_meta, config=dict(prior_meta['config'], model=rel, data_folder=''))
    consistency = dict(result['class_consistency'] or {})
    consistency.pop('classifier', None)  # a local cache path
    prior_results = {'test': {k: v for k, v in result['prior'].items() if k != 'dir'},
                     'class_consistency': consistency}
    pretrained.save(prior_out, 'prior', prior_meta, {'params': params}, results=prior_results,
                    coder_file=os.path.join(prior_dir, pretrained.CODER_FILE))
  return result
