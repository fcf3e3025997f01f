#!/usr/bin/env bash
# The rate-distortion ladder of issue 12: train the operating points, then run
# benchmarks/rate_distortion.py on them (see benchmarks/README.md).
#
# Each operating point is a VQ-VAE (configs/<data set>.py:cpu with one change:
# K, or the image size, which sets the code grid = image size / 4), trained for
# VQ_STEPS steps, and its prior (configs/prior.py:cpu, or :cpu_atari), trained
# for PRIOR_STEPS steps. These are short budgets chosen to spread the points
# out in PSNR, not to train each point to convergence: the K=512 full-size
# points are the 60-minute models of benchmarks/run_results.sh, passed in.
# Rerunning continues: the trainers resume from their latest checkpoints and a
# finished run returns at once.
#     FM_K512=runs/budget/fashion-mnist-prior bash benchmarks/run_rate_distortion.sh fashion-mnist
#     VQ_STEPS=1200 NUM_IMAGES=1000 BOXING_K512=pretrained/atari-boxing-prior \
#       bash benchmarks/run_rate_distortion.sh atari-boxing
#     NUM_IMAGES=500 OUT=/tmp bash benchmarks/run_rate_distortion.sh fashion-mnist
# FM_56PX=1 adds a 14x14-grid Fashion-MNIST point (56 px: 4x the cost of 7x7).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-runs/rd}
OUT=${OUT:-benchmarks/results}
NUM_IMAGES=${NUM_IMAGES:-0}
VQ_STEPS=${VQ_STEPS:-1800}
PRIOR_STEPS=${PRIOR_STEPS:-200}

PRIORS=()

point() {  # name config prior-variant [train_vqvae.py flags...]: trains one point
  local name=$1 cfg=$2 prior=$3
  shift 3
  python3 train_vqvae.py --config "configs/$cfg.py:cpu" --output-folder "$ROOT/$name" \
    --max-steps "$VQ_STEPS" --no-progress "$@"
  python3 train_prior.py --config "configs/prior.py:$prior" --model "$ROOT/$name" \
    --output-folder "$ROOT/$name-prior" --max-steps "$PRIOR_STEPS" --no-progress
  PRIORS+=("$ROOT/$name-prior")
}

given_or() {  # folder name config prior-variant [flags...]: the given prior, else train it
  if [[ -n $1 ]]; then PRIORS+=("$1"); else shift; point "$@"; fi
}

fashion_mnist() {  # 28x28 test images: 4x4 (16 px), 7x7 (28 px) and 14x14 (56 px) grids
  PRIORS=()
  point fm-k16-16px fashion_mnist cpu --k 16 --set image_size=16
  point fm-k64-16px fashion_mnist cpu --k 64 --set image_size=16
  point fm-k16 fashion_mnist cpu --k 16
  point fm-k64 fashion_mnist cpu --k 64
  given_or "${FM_K512:-}" fm-k512 fashion_mnist cpu
  if [[ -n ${FM_56PX:-} ]]; then point fm-k512-56px fashion_mnist cpu --set image_size=56; fi
  bench fashion-mnist rate_distortion
}

atari_boxing() {  # 84x84 test frames: 8x8 (32 px), 11x11 (44 px) and 21x21 (84 px) grids
  PRIORS=()
  point boxing-k16-32px atari_boxing cpu_atari --k 16 --set image_size=32
  point boxing-k64-44px atari_boxing cpu_atari --k 64 --set image_size=44
  point boxing-k512-44px atari_boxing cpu_atari --set image_size=44
  given_or "${BOXING_K512:-}" boxing-k512 atari_boxing cpu_atari
  bench atari-boxing rate_distortion_atari-boxing
}

bench() {  # dataset output-name: the benchmark on every folder in PRIORS
  local dataset=$1 name=$2 args=()
  for p in "${PRIORS[@]}"; do args+=(--prior "$p"); done
  python3 benchmarks/rate_distortion.py --dataset "$dataset" --num-images "$NUM_IMAGES" \
    "${args[@]}" --json "$OUT/$name.json" --plot "$OUT/$name.png"
}

for d in ${@:-fashion-mnist atari-boxing}; do
  case $d in
    fashion-mnist) fashion_mnist ;;
    atari-boxing) atari_boxing ;;
    *) echo "unknown data set $d (fashion-mnist, atari-boxing)" >&2; exit 2 ;;
  esac
done
