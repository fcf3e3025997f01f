"""The package's import rules, read from the source with `ast` (every import,
function-local ones included), so a violation fails here, not in review.

  * inference never imports the trainers: only `vqvae_jax/train/` itself
    imports `vqvae_jax.train` (the scripts, tests and benchmarks do too);
  * `vqvae_jax/models/` is pure networks: no optax, Orbax, argparse, images or
    files, and of ours only `errors` and `models/` itself;
  * the units of the package (each subpackage, each top-level module) import
    one another without cycles, and the import of `vqvae_jax` itself is lazy.
"""
import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'vqvae_jax')
SUBPACKAGES = ('models', 'data', 'train', 'codec', 'cli')

# What `models/` may not import (third party), and the only modules of ours it may.
MODELS_FORBIDDEN = ('optax', 'orbax', 'argparse', 'PIL', 'tqdm', 'tensorboardX',
                    'ml_collections', 'absl', 'os', 'io', 'shutil', 'tempfile', 'pathlib')
MODELS_ALLOWED_OURS = ('vqvae_jax.errors', 'vqvae_jax.models')


def module_name(path: str) -> str:
  rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
  return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def package_sources() -> dict:
  """{module name: source} of every module under vqvae_jax/."""
  out = {}
  for folder, _, files in os.walk(PACKAGE):
    for f in files:
      if f.endswith('.py'):
        path = os.path.join(folder, f)
        with open(path, encoding='utf-8') as fh:
          out[module_name(path)] = fh.read()
  return out


def imports(module: str, source: str) -> list:
  """Every module `source` imports (absolute names), as [(name, line)]:
  `from a import b` counts as `a.b` when b may be a module, and as `a`."""
  out = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      out += [(a.name, node.lineno) for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:  # relative: resolve against this module's package
        parts = module.split('.')[:len(module.split('.')) - node.level]
        base = '.'.join(parts + ([base] if base else []))
      out.append((base, node.lineno))
      out += [(f'{base}.{a.name}', node.lineno) for a in node.names]
  return out


def unit(name: str):
  """The unit of the package a module belongs to: 'vqvae_jax.<subpackage>' or
  the top-level module itself; None outside the package."""
  parts = name.split('.')
  if parts[0] != 'vqvae_jax' or len(parts) == 1:
    return None
  return f'vqvae_jax.{parts[1]}'  # a subpackage (SUBPACKAGES) or a top-level module


def violations(module: str, source: str) -> list:
  """The import rules `module` breaks, as readable strings."""
  out = []
  for name, line in imports(module, source):
    where = f'{module}:{line} imports {name}'
    if (name == 'vqvae_jax.train' or name.startswith('vqvae_jax.train.')) and \
        not module.startswith('vqvae_jax.train'):
      out.append(f'{where}: only vqvae_jax/train/ imports the trainers')
    if module.startswith('vqvae_jax.models'):
      top = name.split('.')[0]
      if top in MODELS_FORBIDDEN:
        out.append(f'{where}: models/ holds pure networks (no {top})')
      if top == 'vqvae_jax' and name != 'vqvae_jax' and not any(
          name == a or name.startswith(a + '.') for a in MODELS_ALLOWED_OURS):
        out.append(f'{where}: models/ imports only errors and models/')
  return out


def unit_graph(sources: dict) -> dict:
  """{unit: {units it imports}} over the package, self-imports left out."""
  known = set(sources)
  graph = {}
  for module, source in sources.items():
    src = unit(module)
    if src is None:
      continue
    deps = graph.setdefault(src, set())
    for name, _ in imports(module, source):
      if name in known or name.rsplit('.', 1)[0] in known:
        dst = unit(name)
        if dst is not None and dst != src:
          deps.add(dst)
  return graph


def find_cycle(graph: dict):
  """One cycle of `graph` as a list of nodes (first == last), or None."""
  state = {}

  def visit(node, path):
    state[node] = 'open'
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 'open':
        return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
      if nxt not in state:
        found = visit(nxt, path + [nxt])
        if found:
          return found
    state[node] = 'done'
    return None

  for start in sorted(graph):
    if start not in state:
      found = visit(start, [start])
      if found:
        return found
  return None


def test_the_package_keeps_its_import_rules():
  sources = package_sources()
  assert all(f'vqvae_jax.{p}' in sources for p in SUBPACKAGES)
  broken = [v for module, source in sorted(sources.items()) for v in violations(module, source)]
  assert not broken, '\n'.join(broken)


def test_the_units_of_the_package_import_one_another_without_cycles():
  graph = unit_graph(package_sources())
  assert 'vqvae_jax.models' in graph['vqvae_jax.codec']  # the graph is not empty
  assert find_cycle(graph) is None, ' -> '.join(find_cycle(graph))


def test_inference_modules_do_not_reach_the_trainers_through_others():
  """Transitively: nothing the codec, evaluation, runs or the API import
  imports vqvae_jax.train."""
  graph = unit_graph(package_sources())
  for start in ('vqvae_jax.codec', 'vqvae_jax.evaluation', 'vqvae_jax.runs', 'vqvae_jax.api'):
    seen, todo = set(), [start]
    while todo:
      node = todo.pop()
      if node not in seen:
        seen.add(node)
        todo += graph.get(node, ())
    assert 'vqvae_jax.train' not in seen, start


@pytest.mark.parametrize('module, source, broken', [
    ('vqvae_jax.codec.x', 'from vqvae_jax.train import loop', True),
    ('vqvae_jax.codec.x', 'def f():\n  from vqvae_jax.train.prior import train_prior\n', True),
    ('vqvae_jax.runs', 'import vqvae_jax.train.vqvae', True),
    ('vqvae_jax.evaluation', 'from vqvae_jax import train', True),
    ('vqvae_jax.models.x', 'import optax', True),
    ('vqvae_jax.models.x', 'def f():\n  import orbax.checkpoint as ocp\n', True),
    ('vqvae_jax.models.x', 'import argparse', True),
    ('vqvae_jax.models.x', 'from vqvae_jax import fileio', True),
    ('vqvae_jax.models.x', 'from vqvae_jax.checkpoints import Checkpointer', True),
    ('vqvae_jax.models.x', 'from . import layers\nfrom vqvae_jax.errors import UserError', False),
    ('vqvae_jax.codec.x', 'from vqvae_jax import runs\nfrom vqvae_jax.models import prior', False),
    ('vqvae_jax.train.x', 'from vqvae_jax.train import loop', False),
])
def test_the_rules_catch_a_planted_violation(module, source, broken):
  assert bool(violations(module, source)) == broken


def test_the_cycle_check_catches_a_planted_cycle():
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': set()}) is None
  sources = {'vqvae_jax.runs': 'from vqvae_jax import grids',
             'vqvae_jax.grids': 'def f():\n  from vqvae_jax import runs\n'}
  assert find_cycle(unit_graph(sources)) is not None


def test_importing_the_package_imports_no_jax():
  """Entry points set XLA flags and malloc before JAX loads: `import vqvae_jax`
  (and `vqvae_jax.__main__`) must not import it; the API loads on first use."""
  code = ('import sys, vqvae_jax, vqvae_jax.__main__; '
          'assert "jax" not in sys.modules, "jax imported"; '
          'assert callable(vqvae_jax.load) and "jax" in sys.modules')
  subprocess.run([sys.executable, '-c', code], cwd=ROOT, check=True)
