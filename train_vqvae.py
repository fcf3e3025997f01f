"""Train a VQ-VAE (pytorch-vqvae's command line works with this script in place of vqvae.py).

    python train_vqvae.py --dataset fashion-mnist --output-folder runs/fmnist
    python train_vqvae.py --config configs/fashion_mnist.py:tiny --output-folder /tmp/t --max-steps 20

Rerunning the same command resumes from the latest checkpoint in --output-folder.
"""
import argparse
import sys

from vqvae_jax import distributed
from vqvae_jax.cli import flags
from vqvae_jax.errors import cli


def run(argv=None) -> dict:
  """Parses flags, trains, and returns the summary (raises UserError on bad input)."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--data-folder', default=None, help='folder with the raw data set files')
  p.add_argument('--dataset', default=None,
                 help='mnist, fashion-mnist, cifar10, miniimagenet, atari-boxing, folder')
  p.add_argument('--output-folder', required=True, help='checkpoints, metrics and images go here')
  p.add_argument('--hidden-size', type=int, default=None, help='encoder/decoder width = code size D')
  p.add_argument('--k', type=int, default=None, help='number of codebook entries K')
  p.add_argument('--batch-size', type=int, default=None)
  p.add_argument('--num-epochs', type=int, default=None)
  p.add_argument('--lr', type=float, default=None)
  p.add_argument('--beta', type=float, default=None, help='commitment loss weight')
  p.add_argument('--codebook', choices=('loss', 'ema'), default=None,
                 help="'ema': moving averages (default); 'loss': the paper's codebook term")
  p.add_argument('--restart-after', type=int, default=None,
                 help='restart a code unused for this many steps (0: never)')
  p.add_argument('--codebook-init', choices=('uniform', 'data', 'kmeans'), default=None)
  p.add_argument('--num-workers', type=int, default=None, help='accepted for compatibility; unused')
  flags.add_common_flags(p)
  args = p.parse_args(argv)
  flags.setup_runtime(args)

  # Only now (setup_runtime has set XLA flags and malloc): these import JAX.
  from vqvae_jax.data import canonical_name  # pylint: disable=g-import-not-at-top
  dataset = canonical_name(args.dataset) if args.dataset else None
  config = flags.build_config(args, dataset or 'fashion-mnist', {
      'data_folder': args.data_folder, 'dataset': dataset, 'hidden_size': args.hidden_size,
      'k': args.k, 'batch_size': args.batch_size, 'num_epochs': args.num_epochs,
      'lr': args.lr, 'beta': args.beta, 'codebook': args.codebook,
      'restart_after': args.restart_after, 'codebook_init': args.codebook_init})
  from vqvae_jax.train import vqvae as vqvae_training  # pylint: disable=g-import-not-at-top
  result = vqvae_training.train_vqvae(config, args.output_folder)
  result['output_folder'] = args.output_folder
  return result


@cli
def main(argv=None):
  result = run(argv)
  valid = result['valid']
  if distributed.is_main_process():
    print(f'done: step {result["step"]}' +
        (f', valid loss {valid["loss"]:.4f}, PSNR {valid["psnr"]:.2f} dB' if valid else '') +
          f'; outputs in {result["output_folder"]}')


if __name__ == '__main__':
  sys.exit(main())
