#!/usr/bin/env bash
# The accelerator check in one command (issue 13): on a fresh NVIDIA GPU machine
# (Python 3.11, this repository checked out, PyPI reachable) install the pinned
# requirements plus requirements-gpu.txt, check that JAX sees the GPU, run the training
# benchmarks (vqvae-jax, and PyTorch on the same GPU where it is installed), the test
# suite and the sampling benchmark on it. Bounded: each step has its own timeout and
# the whole run a deadline (DEVICE_CHECK_DEADLINE_S, default 480 s = 8 minutes); a step
# with no time left is reported as skipped. On an H200 every step together needs about
# 10 minutes (XLA compiles each training step for 38-46 s there): with the default
# deadline bench_sampling, which runs last, is cut; DEVICE_CHECK_DEADLINE_S=660 should run all.
# pytest stopped by the deadline still lists the outcomes it has seen.
#
#     bash benchmarks/device_check.sh               # on the GPU machine
#     bash benchmarks/device_check.sh --no-install  # rerun: no pip (.venv-device or python3)
#     bash benchmarks/device_check.sh --cpu         # dry run here: CPU, smallest sizes
#     bash benchmarks/device_check.sh --wheels DIR  # no PyPI there: python3's own jax
#                                                   # (with its CUDA plugin) + DIR/*.whl
#
# Steps, in this order (GPU / --cpu):
#   install         venv .venv-device + pip install -r requirements.txt -r requirements-gpu.txt
#                   (--cpu: the current python3; --no-install: .venv-device if an
#                   earlier run made it, else python3; --wheels DIR: python3, which
#                   must already hold jax for the GPU, plus the wheels in DIR, made
#                   beforehand elsewhere with `pip download --no-deps`, installed
#                   offline into .device-site and put first on PYTHONPATH)
#   check           jax.default_backend() is 'gpu' ('cpu'), a matmul runs -> env.json
#   bench_train     --no-torch, 32x32x3 (--cpu: 28x28x1, batch 8, 1 step), float32,
#                   tf32 and bfloat16 -> bench_train.PRECISION.json
#   torch.PRECISION where python3 has torch with CUDA and $VQVAE_TORCH_REF_DIR holds
#                   torch_ref.py: benchmarks/torch_step.py --device cuda, the same
#                   VQ-VAE and prior steps in PyTorch, float32 / tf32 / bfloat16
#                   (autocast) -> torch.PRECISION.json (GPU only)
#   tests           the whole suite on the GPU (VQVAE_TEST_PLATFORMS=cuda,cpu, see
#                   tests/conftest.py; no -x, so every GPU failure is listed; 12
#                   pytest-xdist workers, by file, -v, where xdist is installed) / a
#                   few tests with -k -> tests.txt
#   bench_sampling  --no-torch --skip-plain, 1 round -> bench_sampling.json
# Outputs in benchmarks/results/device/ (--cpu: benchmarks/results/device/cpu-dry-run/):
# one JSON file per benchmark (its one output line), a .log (stderr) per step, and
# summary.json (status, exit code and seconds of every step). Exit code 0 when every
# step passed. benchmarks/device_table.py turns a kept run into the README's table.
set -uo pipefail
cd "$(dirname "$0")/.."

MODE=gpu
INSTALL=1
WHEELS=
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) MODE=cpu; INSTALL=0 ;;
    --no-install) INSTALL=0 ;;
    --wheels)
      [ $# -ge 2 ] && [ -d "$2" ] || { echo "--wheels needs a directory of .whl files" >&2; exit 2; }
      WHEELS=$2; INSTALL=0; shift ;;
    -h|--help) sed -n '2,41p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

DEADLINE_S=${DEVICE_CHECK_DEADLINE_S:-480}  # whole run, seconds
OUT=benchmarks/results/device
[ "$MODE" = cpu ] && OUT=$OUT/cpu-dry-run
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.log "$OUT"/*.txt "$OUT"/*.out
PY=python3
STEPS_JSON=()
FAILED=0

# step NAME CAP_S STDOUT_FILE CMD...: runs CMD under `timeout` (the smaller of CAP_S
# and the time left; SIGINT first, so pytest still prints its summary), stdout to
# STDOUT_FILE, the command line and stderr to NAME.log; records the outcome.
step() {
  local name=$1 cap=$2 stdout=$3; shift 3
  local left=$((DEADLINE_S - SECONDS)) limit status rc start=$SECONDS
  limit=$((cap < left ? cap : left))
  if [ "$limit" -lt 15 ]; then
    status=skipped rc=null
  else
    echo "== $name (up to ${limit} s)" >&2
    printf '$ %s\n' "$*" > "$OUT/$name.log"
    timeout -s INT -k 15 "$limit" "$@" > "$stdout" 2>> "$OUT/$name.log"
    rc=$?
    case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  fi
  [ "$status" = ok ] || FAILED=1
  echo "== $name: $status (rc $rc, $((SECONDS - start)) s)" >&2
  STEPS_JSON+=("{\"step\":\"$name\",\"status\":\"$status\",\"rc\":$rc,\"seconds\":$((SECONDS - start))}")
  [ "$status" = ok ]
}

write_summary() {
  local IFS=,
  printf '{"mode":"%s","deadline_s":%d,"wall_s":%d,"ok":%s,"steps":[%s]}\n' \
    "$MODE" "$DEADLINE_S" "$SECONDS" "$([ $FAILED = 0 ] && echo true || echo false)" \
    "${STEPS_JSON[*]}" > "$OUT/summary.json"
  echo "summary: $OUT/summary.json" >&2
  cat "$OUT/summary.json"
}

install() {
  if python3 -m venv .venv-device 2> "$OUT/venv.log"; then
    PY=.venv-device/bin/python
  else
    echo "no venv (see $OUT/venv.log); installing into $(command -v python3)" >&2
    export PIP_BREAK_SYSTEM_PACKAGES=1
  fi
  step install 300 "$OUT/install.out" \
    "$PY" -m pip install --progress-bar off -r requirements.txt -r requirements-gpu.txt
}

# --wheels DIR: python3's packages (its jax and CUDA plugin among them) plus DIR's wheels.
install_wheels() {
  rm -rf .device-site
  step install 120 "$OUT/install.out" python3 -m pip install --no-index --no-deps \
    --no-compile --target .device-site "$WHEELS"/*.whl || return 1
  export PYTHONPATH="$PWD/.device-site${PYTHONPATH:+:$PYTHONPATH}"
}

# The backend check: prints env.json's one line; fails unless the backend is $1.
CHECK_PY='
import importlib.metadata as md, json, platform, sys
import jax, jax.numpy as jnp
def version(name):
  try:
    return md.version(name)
  except md.PackageNotFoundError:
    return None
x = jnp.ones((256, 256))
info = {"backend": jax.default_backend(), "expected": sys.argv[1],
        "devices": [f"{d.platform}: {d.device_kind}" for d in jax.devices()],
        "matmul_ok": float((x @ x)[0, 0]) == 256.0, "python": platform.python_version(),
        **{p: version(p) for p in ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt",
                                   "jax-cuda13-plugin", "jax-cuda13-pjrt", "flax", "optax",
                                   "orbax-checkpoint", "numpy", "torch")}}
print(json.dumps(info))
sys.exit(0 if info["backend"] == sys.argv[1] and info["matmul_ok"] else 1)
'

run_tests() {
  if [ "$MODE" = cpu ]; then
    step tests 120 "$OUT/tests.txt" "$PY" -m pytest -x -q -rfEs tests/test_layers.py \
      -k 'auto_impls or choose or bad_overrides or pmean or conv1x1'
  else
    local workers=()
    # -v: each outcome as it comes (xdist's summary is lost when the deadline stops it).
    "$PY" -c 'import xdist' 2> /dev/null && workers=(-n 12 --dist loadfile -v)
    VQVAE_TEST_PLATFORMS=cuda,cpu step tests 180 "$OUT/tests.txt" "$PY" -m pytest -q -rfEs \
      "${workers[@]}"
  fi
}

# Caps measured on an H200 (2026-12-04, benchmarks/results/device/h200-2026-12-04):
# XLA's GPU compile of one VQ-VAE training step takes 38-46 s, so each bench_train
# run needs about a minute per shape; the PyTorch steps 18-28 s per precision;
# 8 pytest workers ran 96% of the suite in 99 s.
run_benchmarks() {
  local train=(--no-torch --rounds 2 --steps 20) one=32x32x3 precision
  if [ "$MODE" = cpu ]; then
    train=(--no-torch --rounds 1 --steps 1 --batch 8); one=28x28x1
  fi
  for precision in float32 tf32 bfloat16; do
    step "bench_train.$precision" 90 "$OUT/bench_train.$precision.json" \
      "$PY" benchmarks/bench_train.py "${train[@]}" --shapes "$one" --precision "$precision"
  done
  local ref=${VQVAE_TORCH_REF_DIR:-/work/shared/bench}
  if [ "$MODE" = gpu ] && [ -f "$ref/torch_ref.py" ] &&
     "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2> /dev/null; then
    for precision in float32 tf32 bfloat16; do
      VQVAE_TORCH_REF_DIR=$ref step "torch.$precision" 60 "$OUT/torch.$precision.json" \
        "$PY" benchmarks/torch_step.py --device cuda --precision "$precision" \
        --parts vqvae,prior --warmup 5 --steps 20
    done
  else
    echo "== torch: skipped (no CUDA torch, or no torch_ref.py in $ref)" >&2
  fi
}

# After the tests: whatever time is left.
run_sampling() {
  local sampling=(--no-torch --skip-plain --rounds 1 --fast-runs 2 --train-steps 10)
  [ "$MODE" = cpu ] && sampling=(--no-torch --skip-plain --rounds 1 --fast-runs 1 --sections sample)
  step bench_sampling 150 "$OUT/bench_sampling.json" "$PY" benchmarks/bench_sampling.py \
    "${sampling[@]}"
}

main() {
  echo "device check ($MODE), outputs in $OUT, deadline ${DEADLINE_S} s" >&2
  if [ "$INSTALL" = 1 ] && ! install; then
    write_summary; exit 1
  fi
  if [ -n "$WHEELS" ] && ! install_wheels; then
    write_summary; exit 1
  fi
  local backend=gpu
  [ "$MODE" = cpu ] && backend=cpu && export JAX_PLATFORMS=cpu
  if [ "$MODE" = gpu ] && [ "$INSTALL" = 0 ] && [ -z "$WHEELS" ] && [ -x .venv-device/bin/python ]; then
    PY=.venv-device/bin/python
  fi
  if [ "$MODE" = gpu ] && command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia-smi.txt"
  fi
  if ! step check 60 "$OUT/env.json" "$PY" -c "$CHECK_PY" "$backend"; then
    echo "JAX does not run on $backend here: see $OUT/check.log and $OUT/env.json" >&2
    write_summary; exit 1
  fi
  run_benchmarks
  run_tests
  run_sampling
  write_summary
  exit $FAILED
}

main
