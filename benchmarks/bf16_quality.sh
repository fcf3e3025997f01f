#!/usr/bin/env bash
# The quality cost of --precision bfloat16 (issue 13): the :cpu Fashion-MNIST recipe for
# the same number of steps (default 3436, two epochs) in float32 and in bfloat16, each
# evaluated on the test split, plus both runs' epoch timing (benchmarks/epoch_time.py).
# Writes benchmarks/results/bf16-quality/{float32,bfloat16}.{eval,time}.json and
# epochs.jsonl. Rerun: each training resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-runs/bf16-quality}
OUT=${OUT:-benchmarks/results/bf16-quality}
STEPS=${STEPS:-3436}
mkdir -p "$ROOT" "$OUT"
for p in float32 bfloat16; do
  python3 benchmarks/timed.py "$OUT/$p.time.json" -- python3 train_vqvae.py \
    --config configs/fashion_mnist.py:cpu --max-steps "$STEPS" --precision "$p" \
    --output-folder "$ROOT/$p" --no-progress
  python3 -m vqvae_jax evaluate --model "$ROOT/$p" --split test -o "$OUT/$p.eval.json"
done
python3 benchmarks/epoch_time.py "$ROOT/float32" "$ROOT/bfloat16" > "$OUT/epochs.jsonl"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
e = {p: json.load(open(f'{out}/{p}.eval.json')) for p in ('float32', 'bfloat16')}
print(json.dumps({'psnr': {p: e[p]['psnr'] for p in e}, 'ssim': {p: e[p]['ssim'] for p in e},
                  'psnr_cost_db': e['float32']['psnr'] - e['bfloat16']['psnr']}))
PY
