"""benchmarks/recipe_search.py: a finished recipe is one row (and is skipped on a
rerun); a training that stops short leaves no row, so the rerun resumes it."""
import json
import os
import sys

import pytest

from fixtures import isolated_data, write_mnist_folder  # noqa: F401 pylint: disable=unused-import

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'benchmarks'))
pytestmark = pytest.mark.usefixtures('isolated_data')


@pytest.fixture
def search(tmp_path, monkeypatch):
  import recipe_search  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(recipe_search, 'BASE', 'fashion_mnist:tiny')
  monkeypatch.setattr(recipe_search, 'RECIPES', {'base': {}, 'beta0.5': {'beta': 0.5}})
  folder = tmp_path / 'fmnist'
  write_mnist_folder(str(folder), n_train=80, n_test=16)
  results = tmp_path / 'recipes.jsonl'
  args = ['--steps', '3', '--root', str(tmp_path / 'runs'), '--results', str(results),
          '--data-folder', str(folder)]
  return recipe_search, args, results


def _rows(path):
  return [json.loads(l) for l in open(path, encoding='utf-8')] if path.exists() else []


def test_rows_and_rerun_skips_finished(search, capsys):
  recipe_search, args, results = search
  recipe_search.main(args + ['--recipes', 'beta0.5', '--set', 'seed=1'])
  (row,) = _rows(results)
  assert (row['recipe'], row['steps'], row['final_step']) == ('beta0.5', 3, 3)
  assert row['overrides'] == {'beta': 0.5, 'seed': '1'}
  assert row['output'].endswith(os.path.join('beta0.5', '3-steps_seed=1'))
  config = json.load(open(os.path.join(row['output'], 'config.json'), encoding='utf-8'))
  assert (config['beta'], config['seed'], config['max_steps']) == (0.5, 1, 3)
  recipe_search.main(args + ['--recipes', 'beta0.5', '--set', 'seed=1'])
  assert len(_rows(results)) == 1 and 'done already' in capsys.readouterr().err
  assert '| beta0.5 (beta=0.5, seed=1) | 3 | 8 | 24 |' in recipe_search.table(_rows(results))
  # Once the base moves on, the row names what its base was.
  today = dict(row['base_values'], lr=row['base_values']['lr'] * 2, beta=0.25)
  text = recipe_search.table(_rows(results), today)
  assert '| beta0.5† (beta=0.5, seed=1) | 3 |' in text
  assert (f"† on an earlier `fashion_mnist:tiny`: beta=1.0, lr={row['base_values']['lr']} "
          f"(today: beta=0.25, lr={today['lr']}); the overrides in the row apply on top.") in text


def test_a_run_stopped_short_leaves_no_row_and_resumes(search, monkeypatch):
  recipe_search, args, results = search
  from vqvae_jax.train import vqvae as vqvae_training  # pylint: disable=import-outside-toplevel
  real = vqvae_training.train_vqvae

  def stopped_at_two(config, workdir):  # as after SIGTERM: a checkpoint at step 2
    with config.unlocked():
      config.max_steps = 2
    return real(config, workdir)

  monkeypatch.setattr(vqvae_training, 'train_vqvae', stopped_at_two)
  with pytest.raises(SystemExit, match='stopped at step 2 of 3; rerun to resume'):
    recipe_search.main(args + ['--recipes', 'base'])
  assert _rows(results) == []
  monkeypatch.setattr(vqvae_training, 'train_vqvae', real)
  recipe_search.main(args + ['--recipes', 'base'])
  (row,) = _rows(results)
  assert (row['resumed_from_step'], row['final_step']) == (2, 3)


def test_prior_search_row_table_and_rerun(search, monkeypatch, capsys):
  recipe_search, args, results = search
  recipe_search.main(args + ['--recipes', 'base'])
  (vq_row,) = _rows(results)
  import prior_search  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(prior_search, 'BASE', 'prior:tiny')
  monkeypatch.setattr(prior_search, 'VARIANTS', {'lr2e-3': {'lr': 2e-3}})
  tmp = results.parent
  prior_args = ['--model', vq_row['output'], '--steps', '2', '--root', str(tmp / 'priors'),
                '--results', str(tmp / 'priors.jsonl')]
  prior_search.main(prior_args)
  (row,) = _rows(tmp / 'priors.jsonl')
  assert (row['variant'], row['steps'], row['lr'], row['model']) == (
      'lr2e-3', 2, 2e-3, vq_row['output'])
  config = json.load(open(os.path.join(row['output'], 'config.json'), encoding='utf-8'))
  assert (config['lr'], config['max_steps']) == (2e-3, 2)
  assert row['test_bits_per_code'] > 0 and row['unigram_bits_per_code'] >= 0
  prior_search.main(prior_args)
  assert len(_rows(tmp / 'priors.jsonl')) == 1 and 'done already' in capsys.readouterr().err
  assert f"| lr2e-3 (lr=0.002) | `{vq_row['output']}` | 2 | " in prior_search.table(
      _rows(tmp / 'priors.jsonl'))
