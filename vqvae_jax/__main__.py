"""`python -m vqvae_jax <command> ...`: the commands live in `vqvae_jax.cli.commands`."""
import os
import sys

if __name__ == '__main__':
  # Before JAX is imported (the commands import it once their flags are parsed).
  os.environ.setdefault('XLA_FLAGS', '--xla_cpu_experimental_ynn_fusion_type=')

from vqvae_jax.cli.commands import main  # pylint: disable=wrong-import-position

if __name__ == '__main__':
  sys.exit(main())
