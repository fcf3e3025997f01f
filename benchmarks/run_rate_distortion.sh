#!/usr/bin/env bash
# The rate-distortion ladder of issue 12: train the operating points, then run
# benchmarks/rate_distortion.py on them (see benchmarks/README.md).
#
# Each operating point is a VQ-VAE (configs/<data set>.py:cpu with one change:
# K, or the image size, which sets the code grid = image size / 4) and its
# prior (configs/prior.py:cpu). Rerunning continues: the trainers resume from
# their latest checkpoints and a finished run returns at once. A point whose
# prior folder already exists elsewhere can be passed in instead, e.g. the K512
# 7x7 model of benchmarks/run_results.sh:
#     FM_K512=runs/results/fashion-mnist-prior bash benchmarks/run_rate_distortion.sh fashion-mnist
#
#     bash benchmarks/run_rate_distortion.sh                 # both data sets
#     bash benchmarks/run_rate_distortion.sh fashion-mnist   # one
#     NUM_IMAGES=500 OUT=/tmp bash benchmarks/run_rate_distortion.sh fashion-mnist
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-runs/rd}
OUT=${OUT:-benchmarks/results}
NUM_IMAGES=${NUM_IMAGES:-0}

PRIORS=()

point() {  # name config [train_vqvae.py flags...]: trains one point, adds its prior to PRIORS
  local name=$1 cfg=$2
  shift 2
  python3 train_vqvae.py --config "configs/$cfg.py:cpu" --output-folder "$ROOT/$name" \
    --no-progress "$@"
  python3 train_prior.py --config configs/prior.py:cpu --model "$ROOT/$name" \
    --output-folder "$ROOT/$name-prior" --no-progress
  PRIORS+=("$ROOT/$name-prior")
}

given_or() {  # folder name config [flags...]: the given prior folder, else train the point
  if [[ -n $1 ]]; then PRIORS+=("$1"); else shift; point "$@"; fi
}

fashion_mnist() {  # 28x28 test images: 4x4 (16 px), 7x7 (28 px) and 14x14 (56 px) grids
  PRIORS=()
  point fm-k16 fashion_mnist --k 16
  point fm-k64 fashion_mnist --k 64
  given_or "${FM_K512:-}" fm-k512 fashion_mnist
  point fm-k512-56px fashion_mnist --set image_size=56
  point fm-k64-16px fashion_mnist --k 64 --set image_size=16
  bench fashion-mnist rate_distortion
}

atari_boxing() {  # 84x84 test frames: 11x11 (44 px) and 21x21 (84 px) grids
  PRIORS=()
  point boxing-k16 atari_boxing --k 16
  point boxing-k64 atari_boxing --k 64
  given_or "${BOXING_K512:-}" boxing-k512 atari_boxing
  point boxing-k512-44px atari_boxing --set image_size=44
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
