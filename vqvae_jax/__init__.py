"""vqvae-jax: VQ-VAE (van den Oord et al. 2017) and a Gated PixelCNN prior in JAX/Flax."""

__version__ = '0.1.0'
