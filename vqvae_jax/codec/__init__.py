"""Image <-> codes <-> bitstream: the `.vqz` format, the integer prior and range
coding, compression and composition of files. Never imports `vqvae_jax.train`."""
