"""Orbax checkpoints: which steps are kept, atomicity of what is kept."""
import numpy as np

from vqvae_jax.checkpoints import Checkpointer


def test_keeps_the_latest_n_and_the_best_by_validation(tmp_path):
  """Orbax's max_to_keep with best_fn would keep the best N and drop the latest:
  the preservation policy keeps the latest 3 and the best one."""
  losses = {1: 5.0, 2: 4.0, 3: 3.0, 4: 1.0, 5: 2.0, 6: 2.5, 7: 3.5, 8: 4.5, 9: 6.0,
            10: 7.0, 11: 8.0, 12: 9.0}
  ckpt = Checkpointer(str(tmp_path / 'ck'), keep=3)
  for step, loss in losses.items():
    ckpt.save(step, {'w': np.full((3,), step, np.float32)}, {'step': step},
              {'valid_loss': loss})
  ckpt.wait()
  assert ckpt.best_step() == 4 and ckpt.latest_step() == 12
  assert sorted(ckpt.all_steps()) == [4, 10, 11, 12]
  ckpt.close()
  again = Checkpointer(str(tmp_path / 'ck'), read_only=True)  # as a new process sees it
  assert again.best_step() == 4 and sorted(again.all_steps()) == [4, 10, 11, 12]
  saved, meta = again.restore(4, {'w': np.zeros((3,), np.float32)})
  np.testing.assert_array_equal(saved['w'], np.full((3,), 4, np.float32))
  assert meta == {'step': 4}
  again.close()
