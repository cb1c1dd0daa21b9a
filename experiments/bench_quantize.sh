#!/usr/bin/env bash
# Latency of the quantized models of experiments/quantize_methods.sh (seed 1, SST-2; latency does
# not depend on the seed or the task), for the latency and speedup columns of docs/RESULTS.md:
# `condense bench` at batch 1 and 32, sequence length 128, every row of a model in this one command
# so the ratios compare like with like; "fp32" is the float model itself. Run on a quiet machine.
# Usage: bash experiments/bench_quantize.sh OUT_DIR   (the sweep's OUT_DIR)
# Writes experiments/results/quantize/bench/<model>/<row>.json. Env: CONDENSE_THREADS (default 2).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh"
cd "$ROOT"
OUT="${1:?usage: bench_quantize.sh OUT_DIR}"
THREADS="${CONDENSE_THREADS:-2}"
KEEP="${CONDENSE_RESULTS:-$ROOT/experiments/results}/quantize/bench"
for model in ${CONDENSE_QMODELS:-teacher kd-3}; do
  d="$OUT/sst2/seed1"
  mkdir -p "$KEEP/$model"
  for dir in "$d/$model" "$d/$model-q"/*/; do
    [ -f "$dir/metrics.json" ] || continue
    row="$(basename "$dir")"; [ "$row" = "$model" ] && row=fp32
    echo "== $model $row" >&2
    "$BUILD/condense" bench --model "$dir" --batch 1,32 --seq 128 --seconds 4 --format json --threads "$THREADS" \
      > "$KEEP/$model/$row.json.tmp"
    mv "$KEEP/$model/$row.json.tmp" "$KEEP/$model/$row.json"
  done
done
git -C "$ROOT" rev-parse --short=12 HEAD > "$KEEP/commit"
