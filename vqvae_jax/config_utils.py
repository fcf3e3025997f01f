"""Loading config files (`configs/<name>.py[:variant]`) and command-line overrides."""
from __future__ import annotations

import importlib.util
import json
import os
import sys

import ml_collections

from vqvae_jax.errors import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, 'configs')


def config_path(spec: str) -> tuple[str, str | None]:
  """'fashion-mnist', 'fashion_mnist:tiny' or 'path/to/x.py:tiny' -> (path, variant)."""
  name, _, variant = spec.partition(':')
  if name.endswith('.py') or os.sep in name:
    path = name
  else:
    path = os.path.join(CONFIG_DIR, name.replace('-', '_') + '.py')
  if not os.path.isfile(path):
    known = sorted(f[:-3] for f in os.listdir(CONFIG_DIR)
                   if f.endswith('.py') and f not in ('__init__.py', 'common.py'))
    raise UserError(f'no config file {path} (known configs: {", ".join(known)})')
  return path, variant or None


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Imports a config file and calls its `get_config(variant)`."""
  path, variant = config_path(spec)
  parent = os.path.dirname(os.path.dirname(os.path.abspath(path)))
  if parent not in sys.path:
    sys.path.insert(0, parent)  # config files import their package (`configs.common`)
  module_spec = importlib.util.spec_from_file_location(
      f'_vqvae_config_{os.path.basename(path)[:-3]}', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  try:
    return module.get_config(variant)
  except ValueError as e:
    raise UserError(f'{path}: {e}') from None


def _parse(value: str, like):
  if isinstance(like, bool):
    low = value.lower()
    if low in ('1', 'true', 'yes', 'on'):
      return True
    if low in ('0', 'false', 'no', 'off'):
      return False
    raise ValueError(f'expected a boolean, got {value!r}')
  if isinstance(like, int):
    return int(value)
  if isinstance(like, float):
    return float(value)
  return value


def override(config: ml_collections.ConfigDict, key: str, value) -> None:
  """Sets `config.<key>` (dotted) from a string or a value of the field's type."""
  parts = key.split('.')
  target = config
  for part in parts[:-1]:
    if part not in target:
      raise UserError(f'unknown config key {key!r}')
    target = target[part]
  leaf = parts[-1]
  if leaf not in target:
    raise UserError(f'unknown config key {key!r} (known: {", ".join(sorted(target.keys()))})')
  current = target[leaf]
  try:
    new = _parse(value, current) if isinstance(value, str) else type(current)(value)
  except ValueError as e:
    raise UserError(f'bad value for {key}: {e}') from None
  target[leaf] = new


def apply_overrides(config, pairs) -> None:
  """Applies 'key=value' strings (from --set)."""
  for pair in pairs or ():
    key, sep, value = pair.partition('=')
    if not sep:
      raise UserError(f'--set takes key=value, got {pair!r}')
    override(config, key.strip(), value.strip())


def to_json(config) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True)
