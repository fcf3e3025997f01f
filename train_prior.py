"""Train the class-conditional Gated PixelCNN prior on a trained VQ-VAE's codes.

    python train_prior.py --model runs/fmnist --output-folder runs/fmnist-prior
    python -m vqvae_jax sample --prior runs/fmnist-prior -o samples.png

K, the code grid size, the data set and its class names come from the VQ-VAE
folder (--dataset, --k and --hidden-size-vae are accepted and checked against it).
Rerunning the same command resumes from the latest checkpoint.
"""
import argparse
import sys

from vqvae_jax import distributed
from vqvae_jax.cli import flags
from vqvae_jax.errors import UserError, cli


@cli
def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--model', required=True, help='the VQ-VAE output folder')
  p.add_argument('--output-folder', required=True)
  p.add_argument('--data-folder', default=None, help='if the data moved since the VQ-VAE run')
  p.add_argument('--dataset', default=None, help='checked against the VQ-VAE run')
  p.add_argument('--k', type=int, default=None, help='checked against the VQ-VAE run')
  p.add_argument('--hidden-size-vae', type=int, default=None, help='checked against the VQ-VAE run')
  p.add_argument('--hidden-size-prior', type=int, default=None)
  p.add_argument('--num-layers', type=int, default=None)
  p.add_argument('--batch-size', type=int, default=None)
  p.add_argument('--num-epochs', type=int, default=None)
  p.add_argument('--lr', type=float, default=None)
  p.add_argument('--num-workers', type=int, default=None, help='accepted for compatibility; unused')
  flags.add_common_flags(p)
  args = p.parse_args(argv)
  flags.setup_runtime(args)

  config = flags.build_config(args, 'prior', {
      'model': args.model, 'data_folder': args.data_folder,
      'hidden_size_prior': args.hidden_size_prior, 'num_layers': args.num_layers,
      'batch_size': args.batch_size, 'num_epochs': args.num_epochs, 'lr': args.lr})
  # Only now (setup_runtime has set XLA flags and malloc): these import JAX.
  from vqvae_jax import data, runs  # pylint: disable=g-import-not-at-top
  from vqvae_jax.train import prior as prior_training  # pylint: disable=g-import-not-at-top
  vqvae = runs.restore_vqvae(config.model)
  vq_meta = vqvae[2]
  vq = vq_meta['config']
  checks = [('dataset', data.canonical_name(args.dataset) if args.dataset else None,
             vq['dataset']), ('k', args.k, vq['k']), ('hidden-size-vae', args.hidden_size_vae,
                                                      vq['hidden_size'])]
  for flag, given, saved in checks:
    if given is not None and given != saved:
      raise UserError(f'--{flag} {given} does not match the VQ-VAE in {config.model} ({saved})')
  result = prior_training.train_prior(config, args.output_folder, vqvae=vqvae)
  test = result['test']
  if distributed.is_main_process():
    print(f'done: step {result["step"]}; test NLL {test["bits_per_code"]:.3f} bits/code, '
        f'{test["bits_per_dim"]:.4f} bits/dim; outputs in {args.output_folder}')


if __name__ == '__main__':
  sys.exit(main())
