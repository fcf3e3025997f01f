#!/usr/bin/env bash
# The codebook comparison in the README (issue 6): paper codebook vs EMA + restarts.
#
# Fashion-MNIST, same fixed budget for both codebooks: 400 steps at batch 128
# (0.93 epochs), hidden size 64 (the default 256 is ~10x slower on CPU), K = 512.
#   plain: the paper's codebook loss (eq. 3), U(-1/K, 1/K) init
#   ema:   EMA codebook (decay 0.99) + restart of codes unused for 20 steps
# then a Gated PixelCNN prior on each (200 steps at batch 128, its defaults
# otherwise), and `evaluate` on the test split. Rerunning skips finished
# VQ-VAE trainings and resumes the rest.
# Outputs in runs/results/ (git-ignored); JSON and PNGs are copied to
# benchmarks/results/codebook-400-steps/, whose table benchmarks/results_table.py prints.
#
#     bash benchmarks/run_codebook_400.sh   # from the repository root
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=runs/codebook-400-steps
STEPS=${STEPS:-400}
PRIOR_STEPS=${PRIOR_STEPS:-200}
HIDDEN=${HIDDEN:-64}
mkdir -p "$ROOT" benchmarks/results/codebook-400-steps
HW="$(nproc) CPU cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), no accelerator"

train() {  # name, extra flags...
  local name=$1; shift
  [ -f "$ROOT/$name.train.json" ] && return 0
  local start=$SECONDS
  python3 train_vqvae.py --dataset fashion-mnist --output-folder "$ROOT/$name" \
    --hidden-size "$HIDDEN" --batch-size 128 --max-steps "$STEPS" --no-progress "$@"
  printf '{"name": "%s", "steps": %d, "wall_s": %d, "hardware": "%s", "flags": "%s"}\n' \
    "$name" "$STEPS" $((SECONDS - start)) "$HW" "$*" > "$ROOT/$name.train.json"
}

# Explicit codebook flags: the defaults have changed since (EMA + restarts + data init).
train plain --codebook loss --restart-after 0 --codebook-init uniform
train ema --codebook ema --restart-after 20 --codebook-init uniform
for name in plain ema; do
  python3 train_prior.py --model "$ROOT/$name" --output-folder "$ROOT/$name-prior" \
    --max-steps "$PRIOR_STEPS" --no-progress
  python3 -m vqvae_jax evaluate --model "$ROOT/$name" --prior "$ROOT/$name-prior" \
    --split test --output "$ROOT/$name.eval.json" --recon-grid "$ROOT/$name-recon.png"
  python3 -m vqvae_jax sample --prior "$ROOT/$name-prior" -o "$ROOT/$name-samples.png"
  cp "$ROOT/$name.train.json" "$ROOT/$name.eval.json" "$ROOT/$name-recon.png" \
    "$ROOT/$name-samples.png" benchmarks/results/codebook-400-steps/
done
python3 benchmarks/results_table.py benchmarks/results/codebook-400-steps
