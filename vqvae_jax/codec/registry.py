"""Which model folders decode a `.vqz` file, found from its fingerprint.

`compress` records the folders it used (`remember`) in a small JSON file,
$VQVAE_CACHE_DIR/models.json (default ~/.cache/vqvae-jax), replaced atomically:

  {"models": [{"model": "/abs/runs/fmnist" or null, "prior": "/abs/runs/prior" or null,
               "model_fingerprint": "1a2b3c4d", "prior_fingerprint": "5e6f7a8b" or null,
               "coder_fingerprint": "9c0d1e2f" or null}]}

(prior_fingerprint: the float prior, named by version-1 files; coder_fingerprint:
its integer copy, which codes version-2 files.)

(model null: the VQ-VAE the prior was trained on.) `decompress` without
--model / --prior looks a file's fingerprint up there (newest entry first), then
in the run folders under the repository's `pretrained/`, if any (each restored
once to learn its fingerprints, then recorded). Version-2 files name a model pair
by 2 bytes only; a colliding wrong model still fails the file's CRC.
"""
from __future__ import annotations

import json
import os

from vqvae_jax import fileio
from vqvae_jax.codec import compression, vqz
from vqvae_jax.errors import UserError

ENV = 'VQVAE_CACHE_DIR'
FILE_NAME = 'models.json'
PRETRAINED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          'pretrained')


def registry_path() -> str:
  """$VQVAE_CACHE_DIR/models.json (default ~/.cache/vqvae-jax/models.json)."""
  folder = os.environ.get(ENV) or os.path.join(os.path.expanduser('~'), '.cache', 'vqvae-jax')
  return os.path.join(folder, FILE_NAME)


def entries(path: str | None = None) -> list[dict]:
  """The registry's entries, newest first; [] if it is missing or unreadable."""
  try:
    with open(path or registry_path()) as f:
      models = json.load(f)['models']
  except (OSError, ValueError, KeyError, TypeError):
    return []
  return [e for e in models if isinstance(e, dict) and 'model_fingerprint' in e]


def entry_for(codec, model_dir: str | None, prior_dir: str | None) -> dict:
  """The registry entry of a loaded codec and the folders it came from."""
  has_prior = codec.prior is not None
  return {'model': os.path.abspath(model_dir) if model_dir else None,
          'prior': os.path.abspath(prior_dir) if prior_dir and has_prior else None,
          'model_fingerprint': codec.model_fingerprint.hex(),
          'prior_fingerprint': codec.prior_fingerprint.hex() if has_prior else None,
          'coder_fingerprint': codec.coder_fingerprint.hex() if has_prior else None}


def remember(codec, model_dir: str | None, prior_dir: str | None,
             path: str | None = None) -> bool:
  """Puts this codec's folders first in the registry (atomic replace); False if
  the registry cannot be written (it is a convenience, never an error)."""
  path = path or registry_path()
  new = entry_for(codec, model_dir, prior_dir)
  models = [new] + [e for e in entries(path) if e != new]
  try:
    fileio.atomic_write(path, json.dumps({'models': models}, indent=1) + '\n')
  except OSError:
    return False
  return True


def matches(entry: dict, header) -> bool:
  """Whether a registry entry holds the model(s) a file's header names."""
  model_fp = bytes.fromhex(entry['model_fingerprint'])
  prior_fp = bytes.fromhex(entry['prior_fingerprint']) if entry.get('prior_fingerprint') else None
  if header.method == vqz.PRIOR and prior_fp is None:
    return False
  if header.version == 1:
    return header.model_fingerprint == model_fp and (
        header.method == vqz.FIXED or header.prior_fingerprint == prior_fp)
  coder_fp = entry.get('coder_fingerprint')
  if header.method == vqz.PRIOR and not coder_fp:
    return False
  use_prior = bytes.fromhex(coder_fp) if header.method == vqz.PRIOR else None
  return header.fingerprint == vqz.pair_fingerprint(model_fp, use_prior)


def folders_of(entry: dict, header) -> tuple[str | None, str | None]:
  """(model_dir, prior_dir) to load for a file: no prior for a fixed-length one
  unless the VQ-VAE is only known through it."""
  if header.method == vqz.FIXED and entry.get('model'):
    return entry['model'], None
  return entry.get('model'), entry.get('prior')


def find(header, pretrained: str | None = None) -> tuple[str | None, str | None] | None:
  """(model_dir, prior_dir) for a file's header from the registry, then the run
  folders under `pretrained` (default PRETRAINED); None if no known model matches."""
  for entry in entries():
    if matches(entry, header):
      return folders_of(entry, header)
  for entry in _pretrained_entries(pretrained or PRETRAINED):
    if matches(entry, header):
      return folders_of(entry, header)
  return None


def _pretrained_entries(root: str) -> list[dict]:
  """Entries of the run folders under `root` not yet in the registry (each is
  restored once and recorded; a folder that is not a run is skipped)."""
  if not os.path.isdir(root):
    return []
  known = {e.get('prior') or e.get('model') for e in entries()}
  found = []
  for name in sorted(os.listdir(root)):
    folder = os.path.abspath(os.path.join(root, name))
    if folder in known or not os.path.isdir(folder):
      continue
    for model_dir, prior_dir in ((None, folder), (folder, None)):
      try:
        codec = compression.load_codec(model_dir, prior_dir)
      except UserError:
        continue
      remember(codec, model_dir, prior_dir)
      found.append(entry_for(codec, model_dir, prior_dir))
      break
  return found
