"""What the codec benchmarks share: the test images of a prior folder's data set."""
from __future__ import annotations

import json
import os

import numpy as np

from vqvae_jax.data import load


def prior_split_images(prior_dir: str, split: str, count: int) -> np.ndarray:
  """The first `count` uint8 images [N, H, W, C] of `split` of the data set the
  prior's VQ-VAE was trained on (its folders' config.json files)."""
  with open(os.path.join(prior_dir, 'config.json')) as f:
    model_dir = json.load(f)['model']
  with open(os.path.join(model_dir, 'config.json')) as f:
    vq = json.load(f)
  return np.asarray(load(vq['dataset'], split, vq.get('data_folder') or None).images[:count])
