"""Runs train_vqvae in this process and saves the final parameters (test helper).

    python tests/multihost_worker.py OUT.npz DEVICES [train_vqvae.py flags...]

DEVICES is the number of fake CPU devices of this process.
"""
import os
import sys

if __name__ == '__main__':
  out, devices, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
  os.environ['JAX_PLATFORMS'] = 'cpu'
  os.environ['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import train_vqvae  # pylint: disable=g-import-not-at-top
  result = train_vqvae.run(argv)
  params = jax.device_get(jax.tree.map(lambda x: x[0], result['state'].params))
  leaves = jax.tree_util.tree_leaves_with_path(params)
  np.savez(out, process_index=jax.process_index(), process_count=jax.process_count(),
           step=result['step'], **{jax.tree_util.keystr(k): v for k, v in leaves})
