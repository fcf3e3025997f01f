"""Loading config files and command-line overrides.

A config spec is `name[:variant]`: a module of the `configs` package
(`fashion-mnist`, `fashion_mnist:tiny`, `prior:cpu`), imported as
`configs.<name>` wherever that package is importable (a source checkout's root
on `sys.path`, or an installed vqvae-jax: `pip install -e .` installs it), or
a file given by its path (`path/to/x.py:tiny`, any name ending in `.py` or
holding a path separator).
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import pkgutil
import sys

import ml_collections

from vqvae_jax.errors import UserError

PACKAGE = 'configs'
_NOT_CONFIGS = ('common',)  # modules of the package that are not configs


def _is_path(name: str) -> bool:
  return name.endswith('.py') or os.sep in name or (os.altsep or os.sep) in name


def known_configs() -> list[str]:
  """The config names of the `configs` package ([] if it is not importable)."""
  try:
    package = importlib.import_module(PACKAGE)
  except ImportError:
    return []
  return sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                if m.name not in _NOT_CONFIGS)


def _import_file(path: str):
  if not os.path.isfile(path):
    raise UserError(f'no config file {path}')
  parent = os.path.dirname(os.path.dirname(os.path.abspath(path)))
  if parent not in sys.path:
    sys.path.insert(0, parent)  # config files import their package (`configs.common`)
  module_spec = importlib.util.spec_from_file_location(
      f'_vqvae_config_{os.path.basename(path)[:-3]}', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def _import_named(name: str):
  module_name = name.replace('-', '_')
  known = known_configs()
  if not known:
    raise UserError(f'config {name!r}: the `{PACKAGE}` package is not importable (run from '
                    'a source checkout, install vqvae-jax with `pip install -e .`, or give a '
                    'config file path: --config path/to/file.py:variant)')
  if module_name not in known:
    raise UserError(f'no config {name!r} in the {PACKAGE} package (known configs: '
                    f'{", ".join(known)}; or give a file path: path/to/file.py:variant)')
  return importlib.import_module(f'{PACKAGE}.{module_name}')


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Imports a config module (by name or file path) and calls its `get_config(variant)`."""
  name, _, variant = spec.partition(':')
  module = _import_file(name) if _is_path(name) else _import_named(name)
  try:
    return module.get_config(variant or None)
  except ValueError as e:
    raise UserError(f'{module.__file__}: {e}') from None


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
