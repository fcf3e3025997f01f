"""The networks as pure Flax modules and functions: the VQ-VAE and its quantizer,
the Gated PixelCNN prior and its samplers. No optax, Orbax, files or flags."""
