"""What the codec benchmarks share: the test images of a prior folder's data set."""
from __future__ import annotations

import numpy as np

from vqvae_jax import runs


def prior_split_images(prior_dir: str, split: str, count: int) -> np.ndarray:
  """The first `count` uint8 images [N, H, W, C] of `split` of the data set the
  prior's VQ-VAE was trained on (a run folder or a `pretrained/` one)."""
  _, _, meta = runs.restore_prior(prior_dir)
  _, _, vq_meta = runs.restore_vqvae(meta['config']['model'])
  return np.asarray(runs.load_split(runs.run_config(vq_meta), split).images[:count])
