"""PyTorch's training steps for the reference architecture, on CPU or CUDA.

The reference model of ../shared/bench/torch_ref.py (measuring only; its
directory from $VQVAE_TORCH_REF_DIR, default /work/shared/bench):
  vqvae   VQ-VAE step, batch 128, hidden 256, K 512, Adam, per image shape
  prior   Gated PixelCNN prior step (64 channels, 15 layers, K 512), batch 128,
          on 7x7 and 8x8 code grids
--precision: float32 (TF32 off for matmuls and cuDNN convolutions), tf32 (TF32
on for both; CUDA), bfloat16 (the forward pass and the losses under
torch.autocast(bfloat16): oneDNN's bfloat16 kernels on CPU, AMX where the CPU
has it; tensor cores on CUDA). On CUDA cuDNN autotuning is on and each timed
step ends with torch.cuda.synchronize(). bench_train.py runs this for
--precision bfloat16 on CPU (bench_torch.py times float32 there);
benchmarks/device_check.sh runs it on the GPU.
Prints one JSON line: {"vqvae_train_imgs_per_s": {shape: img/s},
"prior_train_imgs_per_s": {grid: img/s}, ...}.

  .venv-torch/bin/python benchmarks/torch_step.py --threads 2 --parts vqvae
  python3 benchmarks/torch_step.py --device cuda --precision float32
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.environ.get('VQVAE_TORCH_REF_DIR', '/work/shared/bench'))
import torch_ref as ref  # noqa: E402

BATCH, HIDDEN, K, N_CLASSES = 128, 256, 512, 10
SHAPES = {'28x28x1': (28, 1), '32x32x3': (32, 3)}
GRIDS = {'7x7': 7, '8x8': 8}


def _autocast(device, precision):
  if precision == 'bfloat16':
    return torch.autocast(device, dtype=torch.bfloat16)
  return torch.autocast(device, enabled=False)


def _time(fn, device, warmup, steps):
  """Median seconds of fn() over `steps` calls after `warmup` ones."""
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
  for _ in range(warmup):
    fn()
  sync()
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    fn()
    sync()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def vqvae_step(model, opt, x, device, precision):
  opt.zero_grad(set_to_none=True)
  with _autocast(device, precision):
    total, _ = ref.vqvae_losses(model, x, ref.BETA)
  total.backward()
  opt.step()


def prior_step(prior, opt, codes, labels, device, precision):
  opt.zero_grad(set_to_none=True)
  with _autocast(device, precision):
    loss = ref.prior_loss(prior, codes, labels)
  loss.backward()
  opt.step()


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
  ap.add_argument('--precision', default='bfloat16', choices=('float32', 'tf32', 'bfloat16'))
  ap.add_argument('--threads', type=int, default=2, help='CPU threads (--device cpu)')
  ap.add_argument('--steps', type=int, default=8, help='timed steps per shape')
  ap.add_argument('--warmup', type=int, default=2, help='untimed steps per shape first')
  ap.add_argument('--parts', default='vqvae', help='comma-separated subset of vqvae, prior')
  ap.add_argument('--shapes', default=','.join(SHAPES))
  ap.add_argument('--grids', default=','.join(GRIDS))
  args = ap.parse_args()
  device = args.device
  if device == 'cuda' and not torch.cuda.is_available():
    raise SystemExit('--device cuda: torch sees no CUDA device')
  if device == 'cpu':
    torch.set_num_threads(args.threads)
  else:
    tf32 = args.precision == 'tf32'
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
  gen = torch.Generator().manual_seed(0)
  out = {'device': device if device == 'cpu' else torch.cuda.get_device_name(),
         'precision': args.precision, 'torch': torch.__version__,
         'autocast': 'bfloat16' if args.precision == 'bfloat16' else None,
         'warmup_steps': args.warmup, 'timed_steps': args.steps,
         'date': datetime.date.today().isoformat()}
  parts = set(filter(None, args.parts.split(',')))
  if 'vqvae' in parts:
    out['vqvae_train_imgs_per_s'] = {}
    for s in filter(None, args.shapes.split(',')):
      size, channels = SHAPES[s]
      model = ref.VQVAE(channels, HIDDEN, K).to(device).train()
      opt = ref.make_vqvae_optimizer(model)
      x = (torch.rand(BATCH, channels, size, size, generator=gen) * 2 - 1).to(device)
      t = _time(lambda: vqvae_step(model, opt, x, device, args.precision), device,
                args.warmup, args.steps)
      out['vqvae_train_imgs_per_s'][s] = round(BATCH / t, 2)
  if 'prior' in parts:
    out['prior_train_imgs_per_s'] = {}
    for g in filter(None, args.grids.split(',')):
      hw = GRIDS[g]
      prior = ref.GatedPixelCNNPrior(K, 64, 15, N_CLASSES).to(device).train()
      opt = ref.make_prior_optimizer(prior)
      codes = torch.randint(0, K, (BATCH, hw, hw), generator=gen).to(device)
      labels = torch.randint(0, N_CLASSES, (BATCH,), generator=gen).to(device)
      t = _time(lambda: prior_step(prior, opt, codes, labels, device, args.precision), device,
                args.warmup, args.steps)
      out['prior_train_imgs_per_s'][g] = round(BATCH / t, 2)
  out['vq_only_ms'] = None
  print(json.dumps(out))


if __name__ == '__main__':
  main()
