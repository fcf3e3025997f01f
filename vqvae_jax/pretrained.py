"""Pretrained model folders: a trained run's parameters and config, nothing else.

A folder (e.g. `pretrained/fashion-mnist/`) holds

    model.json         {'format': FORMAT, 'version': 1, 'kind': 'vqvae' | 'prior',
                        'meta': the checkpoint's meta (config, class names, step, ...),
                        'arrays_sha256', 'dtype', 'results': the recorded test metrics}
    params.npz         every array of the inference variables ({'params'} and, for a
                       VQ-VAE, {'batch_stats'}) under its '/'-joined path; no optimiser
                       state, no codebook statistics
    integer_prior.npz  (a prior) the integer model that codes `.vqz` files

Every command that takes a run folder (`sample`, `evaluate`, `compress`,
`decompress`, `train_prior --model`) takes one of these instead:
`runs.restore_vqvae` / `restore_prior` hand them to `restore`. A prior records its VQ-VAE
folder relative to itself (`meta['config']['model']`, e.g. '../fashion-mnist'),
so the pair can be moved together. Parameters are stored as float32, or as float16
(`dtype`, half the size): restored as float32 either way, so a float16 folder is
its own model (other fingerprints, other `.vqz` files than its run's), and
`export` measures it as shipped.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil

import flax.serialization
import flax.traverse_util
import jax
import numpy as np

from vqvae_jax import fileio
from vqvae_jax.errors import UserError

FORMAT = 'vqvae-jax-pretrained'
VERSION = 1
MODEL_FILE = 'model.json'
PARAMS_FILE = 'params.npz'
CODER_FILE = 'integer_prior.npz'  # = compression.CODER_FILE
FIELDS = ('params', 'batch_stats')  # the state fields inference needs
DTYPES = ('float32', 'float16')  # storage of the float32 arrays


def is_pretrained(folder: str) -> bool:
  return os.path.isfile(os.path.join(folder, MODEL_FILE))


def arrays_digest(arrays: dict) -> str:
  """sha256 (hex) over the sorted names, shapes, dtypes and bytes of `arrays`."""
  h = hashlib.sha256()
  for name in sorted(arrays):
    a = np.ascontiguousarray(arrays[name])
    h.update(f'{name}:{a.dtype.str}:{a.shape};'.encode())
    h.update(a.tobytes())
  return h.hexdigest()


def flatten(state_dict: dict) -> dict:
  """{'params': {...}, 'batch_stats': {...}} -> {'params/enc/conv/kernel': ndarray}."""
  flat = flax.traverse_util.flatten_dict(
      {f: state_dict[f] for f in FIELDS if state_dict.get(f) is not None}, sep='/')
  return {k: np.asarray(jax.device_get(v)) for k, v in flat.items()}


def stored_arrays(state_dict: dict, dtype: str = 'float32') -> dict:
  """`flatten(state_dict)` with its float32 arrays cast to `dtype` (one of
  DTYPES) as `save` writes them; ValueError for values float16 cannot hold."""
  if dtype not in DTYPES:
    raise ValueError(f'dtype must be one of {DTYPES}, got {dtype!r}')
  arrays = flatten(state_dict)
  if dtype == 'float32':
    return arrays
  out = {}
  for name, a in arrays.items():
    if a.dtype == np.float32:
      if not np.all(np.isfinite(a)) or np.max(np.abs(a), initial=0.0) > np.finfo(np.float16).max:
        raise ValueError(f'{name} holds values float16 cannot store (non-finite or above '
                         f'{np.finfo(np.float16).max})')
      a = a.astype(np.float16)
    out[name] = a
  return out


def as_stored(tree, dtype: str = 'float32'):
  """`tree` (any pytree) as a `dtype` folder restores it: float32 leaves
  rounded to float16 and back for 'float16'; unchanged for 'float32'."""
  if dtype not in DTYPES:
    raise ValueError(f'dtype must be one of {DTYPES}, got {dtype!r}')
  if dtype == 'float32':
    return tree
  def halve(x):
    x = np.asarray(jax.device_get(x))
    return x.astype(np.float16).astype(np.float32) if x.dtype == np.float32 else x
  return jax.tree.map(halve, tree)


def save(out_dir: str, kind: str, meta: dict, state_dict: dict, results: dict | None = None,
         coder_file: str | None = None, dtype: str = 'float32') -> None:
  """Writes a pretrained folder from a restored state's `state_dict` (as
  `flax.serialization.to_state_dict` gives it) and its checkpoint `meta`, the
  float32 arrays stored as `dtype` ('float32' or 'float16').

  Built in a temporary folder beside `out_dir` and swapped in whole: an
  existing folder is replaced only by a complete one.
  """
  arrays = stored_arrays(state_dict, dtype)
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  record = {'format': FORMAT, 'version': VERSION, 'kind': kind, 'meta': meta,
            'arrays_sha256': arrays_digest(arrays), 'dtype': dtype,
            'results': results or {}}
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = os.path.join(parent, f'.{os.path.basename(out_dir)}.partial')
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  fileio.atomic_write(os.path.join(tmp, PARAMS_FILE), buf.getvalue())
  if coder_file:
    shutil.copyfile(coder_file, os.path.join(tmp, CODER_FILE))
  fileio.write_json(os.path.join(tmp, MODEL_FILE), record)
  old = tmp + '.old'
  if os.path.exists(out_dir):
    shutil.rmtree(old, ignore_errors=True)
    os.replace(out_dir, old)
  os.replace(tmp, out_dir)
  shutil.rmtree(old, ignore_errors=True)


def read_record(folder: str) -> dict:
  """model.json of a pretrained folder, checked; UserError if unreadable."""
  path = os.path.join(folder, MODEL_FILE)
  try:
    with open(path, encoding='utf-8') as f:
      record = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f'{path} is not a readable pretrained model ({e})') from None
  if not isinstance(record, dict) or record.get('format') != FORMAT:
    raise UserError(f'{path} is not a vqvae-jax pretrained model')
  if record.get('version') != VERSION:
    raise UserError(f'{path} has format version {record.get("version")!r}; this vqvae-jax '
                    f'reads version {VERSION}: upgrade vqvae-jax')
  return record


def restore(folder: str, kind: str, make_state):
  """(model, state, meta) from a pretrained folder, as `checkpoints.restore_run`
  returns them; only the fields in FIELDS of `state` hold arrays, the rest stay
  as the template's shapes."""
  record = read_record(folder)
  if record['kind'] != kind:
    raise UserError(f'{folder} holds a pretrained {record["kind"]}, not a {kind}')
  meta = dict(record['meta'])
  if kind == 'prior':
    config = dict(meta['config'])
    config['model'] = os.path.normpath(os.path.join(os.path.abspath(folder), config['model']))
    meta['config'] = config
  model, state, _ = make_state(meta)
  path = os.path.join(folder, PARAMS_FILE)
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError, EOFError) as e:
    raise UserError(f'{path} is not readable ({e}): the pretrained folder is damaged') from None
  if arrays_digest(arrays) != record['arrays_sha256']:
    raise UserError(f'{path} does not match the digest in {MODEL_FILE}: the pretrained '
                    'folder is damaged')
  template = flax.serialization.to_state_dict(state)
  want = flatten_shapes(template)
  if set(want) != set(arrays):
    raise UserError(f'{path} holds other arrays than this vqvae-jax builds for its config '
                    f'(missing {sorted(set(want) - set(arrays))[:3]}, extra '
                    f'{sorted(set(arrays) - set(want))[:3]})')
  storage = record.get('dtype', 'float32')
  if storage not in DTYPES:
    raise UserError(f'{path}: unknown storage dtype {storage!r} in {MODEL_FILE}')
  for name, (shape, dtype) in want.items():
    stored = np.dtype(storage) if dtype == np.float32 else dtype
    if arrays[name].shape != shape or arrays[name].dtype != stored:
      raise UserError(f'{path}: {name} is {arrays[name].dtype}{list(arrays[name].shape)}, '
                      f'expected {stored}{list(shape)}')
    arrays[name] = arrays[name].astype(dtype)
  loaded = flax.traverse_util.unflatten_dict(arrays, sep='/')
  for field in loaded:
    template[field] = loaded[field]
  return model, flax.serialization.from_state_dict(state, template), meta


def flatten_shapes(state_dict: dict) -> dict:
  """{'/'-joined path: (shape, dtype)} of the FIELDS of a state dict template."""
  flat = flax.traverse_util.flatten_dict(
      {f: state_dict[f] for f in FIELDS if state_dict.get(f) is not None}, sep='/')
  return {k: (tuple(v.shape), np.dtype(v.dtype)) for k, v in flat.items()}


def results(folder: str) -> dict:
  """The test metrics recorded when the folder was exported."""
  return read_record(folder).get('results', {})


def set_results(folder: str, results: dict) -> None:
  """Replaces the recorded test metrics of a pretrained folder (model.json,
  written atomically)."""
  record = read_record(folder)
  record['results'] = results
  fileio.write_json(os.path.join(folder, MODEL_FILE), record)

