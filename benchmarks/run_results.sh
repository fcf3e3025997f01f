#!/usr/bin/env bash
# Every published result of the :cpu recipes, from nothing (issue 11).
#
# For Fashion-MNIST and Atari Boxing: the VQ-VAE (configs/<data set>.py:cpu),
# its prior (configs/prior.py:cpu), `evaluate` on the test split (PSNR, SSIM,
# codes used, prior NLL against the codes' unigram entropy, class consistency),
# a reconstruction grid, a sample grid, and the pretrained/ folders. Each
# stage's wall time is added up across invocations by benchmarks/timed.py, so a
# run killed at the end of a session continues when this script is rerun (the
# trainers resume from their latest checkpoint). Outputs: runs in $ROOT
# (git-ignored), JSON and PNGs in benchmarks/results/cpu-recipes/, the tables
# printed by benchmarks/results_table.py.
#
#     bash benchmarks/run_results.sh                   # both data sets
#     bash benchmarks/run_results.sh fashion-mnist     # one
#
# Environment: ROOT (runs), OUT (JSON and PNGs), PRETRAINED (where `export`
# writes; empty: no export), EXPORT_DTYPE (its storage: float16, the default, or
# float32), VQ_STEPS / PRIOR_STEPS (--max-steps overrides of
# the :cpu configs; empty: the configs' own).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-runs/results}
OUT=${OUT:-benchmarks/results/cpu-recipes}
PRETRAINED=${PRETRAINED-pretrained}
EXPORT_DTYPE=${EXPORT_DTYPE:-float16}
VQ_STEPS=${VQ_STEPS:-}
PRIOR_STEPS=${PRIOR_STEPS:-}
mkdir -p "$ROOT" "$OUT"

config_of() { case $1 in fashion-mnist) echo fashion_mnist ;; atari-boxing) echo atari_boxing ;; esac; }
prior_of() { case $1 in atari-boxing) echo cpu_atari ;; *) echo cpu ;; esac; }

run() {  # data set
  local d=$1 cfg
  cfg=$(config_of "$d")
  python3 benchmarks/timed.py "$ROOT/$d.vq.time.json" -- \
    python3 train_vqvae.py --config "configs/$cfg.py:cpu" --output-folder "$ROOT/$d" --no-progress \
      ${VQ_STEPS:+--max-steps "$VQ_STEPS"}
  python3 benchmarks/timed.py "$ROOT/$d.prior.time.json" -- \
    python3 train_prior.py --config "configs/prior.py:$(prior_of "$d")" --model "$ROOT/$d" \
      --output-folder "$ROOT/$d-prior" --no-progress ${PRIOR_STEPS:+--max-steps "$PRIOR_STEPS"}
  python3 -m vqvae_jax evaluate --model "$ROOT/$d" --prior "$ROOT/$d-prior" --split test \
    -o "$OUT/$d.eval.json" --recon-grid "$OUT/$d-recon.png"
  python3 -m vqvae_jax sample --prior "$ROOT/$d-prior" -o "$OUT/$d-samples.png" --no-consistency \
    --per-class "$( [ "$d" = atari-boxing ] && echo 16 || echo 8 )"
  if [ -n "$PRETRAINED" ]; then
    python3 -m vqvae_jax export --model "$ROOT/$d" --prior "$ROOT/$d-prior" -o "$PRETRAINED/$d" \
      --dtype "$EXPORT_DTYPE"
  fi
  python3 - "$ROOT/$d" "$OUT/$d.train.json" <<'PY'
import json, sys
root, out = sys.argv[1:]
vq, prior = (json.load(open(f'{root}.{s}.time.json')) for s in ('vq', 'prior'))
steps = max(json.loads(l)['step'] for l in open(f'{root}/metrics.jsonl'))
m = vq['machine']
json.dump({'steps': steps, 'wall_s': vq['wall_s'] + prior['wall_s'], 'vq_wall_s': vq['wall_s'],
           'prior_wall_s': prior['wall_s'],
           'other_procs_cpu_frac': max(vq['other_procs_cpu_frac'] or 0, prior['other_procs_cpu_frac'] or 0),
           'hardware': f"{m['cores']} CPU cores ({m['cpu']}), no accelerator",
           'vq_wall_source': vq.get('source', 'timed.py'), 'date': prior['date']},
          open(out, 'w'), indent=2, sort_keys=True)
PY
}

for d in "${@:-fashion-mnist atari-boxing}"; do
  for one in $d; do run "$one"; done
done
python3 benchmarks/results_table.py "$OUT"
