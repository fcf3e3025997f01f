"""A trained model from Python: `vqvae_jax.load(folder)`.

    import jax, vqvae_jax
    m = vqvae_jax.load('pretrained/fashion-mnist-prior')  # a prior folder: VQ-VAE + prior
    codes = m.encode(images)        # uint8 [N, H, W, C] -> int32 [N, H/4, W/4]
    recon = m.decode(codes)         # -> uint8 [N, H, W, C]
    samples = m.sample([0, 0, 7], jax.random.key(0))   # uint8 [3, H, W, C] of those classes
    data = m.compress(images[0])    # the bytes of a .vqz file
    image = m.decompress(data)      # uint8 [H, W, C]
    m.evaluate('test')              # dict, as `python -m vqvae_jax evaluate` reports

`folder` is a training output folder or a `pretrained/` folder, of a VQ-VAE
(then `sample` and entropy coding are unavailable: `compress` writes the
fixed-width method) or of a prior (its VQ-VAE is the one it was trained on).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from vqvae_jax import evaluation, runs
from vqvae_jax.codec import compression
from vqvae_jax.errors import UserError
from vqvae_jax.models import sampling


@dataclasses.dataclass(frozen=True)
class Model:
  """A VQ-VAE, optionally with its prior, loaded for inference (float32)."""
  codec: compression.Codec
  model_dir: str
  prior_dir: str | None = None
  grid: tuple | None = None  # the prior's code grid (h, w)

  @property
  def class_names(self) -> tuple:
    return self.codec.class_names

  def encode(self, images) -> np.ndarray:
    """uint8 [N, H, W, C] (H, W multiples of 4) -> codes int32 [N, H/4, W/4]."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[-1] != self.codec.channels:
      raise UserError(f'images must be uint8 [N, H, W, {self.codec.channels}], got '
                      f'{images.dtype} {list(images.shape)}')
    return compression.encode_images(self.codec, images)

  def decode(self, codes) -> np.ndarray:
    """codes [N, h, w] in [0, K) -> uint8 images [N, 4h, 4w, C]."""
    return compression.decode_codes(self.codec, codes)

  def sample(self, labels, key, temperature: float = 1.0, grid=None) -> np.ndarray:
    """Class-conditional samples: labels [N] (indices or class names) -> uint8
    images [N, H, W, C]; `grid` (h, w) of codes defaults to the prior's."""
    self._need_prior('sample')
    index = np.asarray([compression.resolve_label(self.codec, l) for l in labels], np.int32)
    grid = tuple(grid or self.grid)
    codes = sampling.sample_codes(self.codec.prior, self.codec.prior_params, index, grid, key,
                                  temperature)
    return self.decode(np.asarray(codes))

  def compress(self, image, label=None) -> bytes:
    """uint8 [H, W, C] (any size) -> .vqz bytes: prior-coded if a prior is
    loaded (the label chosen for the fewest bits unless given), else fixed width."""
    method = 'prior' if self.codec.prior is not None else 'fixed'
    return compression.compress(self.codec, image, method, label).data

  def decompress(self, data: bytes) -> np.ndarray:
    """.vqz bytes -> uint8 [H, W, C] at the size the file was made from."""
    return compression.decompress(self.codec, data)

  def evaluate(self, split: str = 'test', per_class: int = 0, data_folder: str | None = None):
    """Reconstruction metrics (and the prior's NLL, class consistency from
    `per_class` samples a class) on a split of the real data set."""
    return evaluation.evaluate(self.model_dir, split=split, prior_dir=self.prior_dir,
                               data_folder=data_folder, consistency_per_class=per_class)

  def _need_prior(self, what: str):
    if self.codec.prior is None:
      raise UserError(f'{what} needs a prior: load a prior folder, not {self.model_dir}')


def load(folder: str) -> Model:
  """A run or pretrained folder of a VQ-VAE or of a prior -> Model."""
  if runs.folder_kind(folder) == 'prior':
    meta = runs.restore_prior(folder)[2]
    model_dir = meta['config']['model']
    return Model(compression.load_codec(model_dir, folder), model_dir, folder,
                 tuple(meta['grid']))
  return Model(compression.load_codec(folder), folder)
