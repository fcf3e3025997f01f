"""vqvae-jax: VQ-VAE (van den Oord et al. 2017) and a Gated PixelCNN prior in JAX/Flax."""

__version__ = '0.1.0'

__all__ = ['Model', 'load']


def __getattr__(name):
  # The public API (vqvae_jax.api), imported on first use: importing the package
  # must not import JAX, so that entry points can set XLA flags and malloc first.
  if name in __all__:
    from vqvae_jax import api  # pylint: disable=g-import-not-at-top
    return getattr(api, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
