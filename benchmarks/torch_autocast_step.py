"""PyTorch's VQ-VAE training step under torch.autocast(bfloat16), for bench_train.py.

The reference architecture of ../shared/bench/torch_ref.py (measuring only),
batch 128, hidden 256, K 512, Adam, as bench_torch.py times it in float32;
here the forward pass and the losses run under
`torch.autocast('cpu', dtype=torch.bfloat16)` (oneDNN's bfloat16 kernels: AMX
where the CPU has it), the backward pass and Adam as autocast leaves them.
Prints one JSON line: {"vqvae_train_imgs_per_s": {shape: img/s}, ...}.

  .venv-torch/bin/python benchmarks/torch_autocast_step.py --threads 2
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.environ.get('VQVAE_TORCH_REF_DIR', '/work/shared/bench'))
import torch_ref as ref  # noqa: E402

BATCH, HIDDEN, K = 128, 256, 512
SHAPES = {'28x28x1': (28, 1), '32x32x3': (32, 3)}


def step(model, opt, x):
  opt.zero_grad(set_to_none=True)
  with torch.autocast('cpu', dtype=torch.bfloat16):
    total, _ = ref.vqvae_losses(model, x, ref.BETA)
  total.backward()
  opt.step()
  return float(total.detach())


def main():
  ap = argparse.ArgumentParser(description=__doc__)
  ap.add_argument('--threads', type=int, default=2)
  ap.add_argument('--steps', type=int, default=8)
  ap.add_argument('--shapes', default=','.join(SHAPES))
  args = ap.parse_args()
  torch.set_num_threads(args.threads)
  gen = torch.Generator().manual_seed(0)
  out = {}
  for s in args.shapes.split(','):
    size, channels = SHAPES[s]
    model = ref.VQVAE(channels, HIDDEN, K).train()
    opt = ref.make_vqvae_optimizer(model)
    x = torch.rand(BATCH, channels, size, size, generator=gen) * 2 - 1
    for _ in range(2):
      step(model, opt, x)
    times = []
    for _ in range(args.steps):
      t0 = time.perf_counter()
      step(model, opt, x)
      times.append(time.perf_counter() - t0)
    out[s] = round(BATCH / statistics.median(times), 2)
  print(json.dumps({'vqvae_train_imgs_per_s': out, 'vq_only_ms': None, 'autocast': 'bfloat16',
                    'torch': torch.__version__}))


if __name__ == '__main__':
  main()
