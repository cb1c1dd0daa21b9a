#!/usr/bin/env bash
# Latency of the pruned, factorized and shared models (SST-2, seed CONDENSE_BENCH_SEED, default 1;
# latency depends on the shapes only, not on the seed or the task), for the latency and speedup columns of docs/RESULTS.md: `condense bench` at
# batch 1 and 32, sequence length 128, the unpruned model first and every other row of that model
# in this one command, so the ratios compare like with like. Run on a quiet machine.
# Usage: bash experiments/bench_prune.sh OUT_DIR [ROWS...]   (the sweep's OUT_DIR; default: all rows)
# Writes experiments/results/prune/bench/<model>/<row>.json. Env: CONDENSE_THREADS (default 2),
# CONDENSE_PMODELS (default "teacher kd-3"), CONDENSE_BENCH_TASK (whose models, default sst2). Each
# model's folder gets a source.json naming the commit, task and seed it was measured with.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh"
cd "$ROOT"
OUT="${1:?usage: bench_prune.sh OUT_DIR [ROWS...]}"
shift
THREADS="${CONDENSE_THREADS:-2}"
KEEP="${CONDENSE_RESULTS:-$ROOT/experiments/results}/prune/bench"
for model in ${CONDENSE_PMODELS:-teacher kd-3}; do
  task="${CONDENSE_BENCH_TASK:-sst2}" seed="${CONDENSE_BENCH_SEED:-1}"
  d="$OUT/$task/seed$seed"
  mkdir -p "$KEEP/$model"
  dirs=("$d/$model")
  if [ $# -gt 0 ]; then for r in "$@"; do dirs+=("$d/$model-p/$r"); done; else dirs+=("$d/$model-p"/*/); fi
  for dir in "${dirs[@]}"; do
    [ -f "$dir/metrics.json" ] || continue
    row="$(basename "$dir")"; [ "$row" = "$model" ] && row=unpruned
    echo "== $model $row" >&2
    "$BUILD/condense" bench --model "$dir" --batch 1,32 --seq 128 --seconds 4 --format json --threads "$THREADS" \
      > "$KEEP/$model/$row.json.tmp"
    mv "$KEEP/$model/$row.json.tmp" "$KEEP/$model/$row.json"
  done
  printf '{"commit": "%s", "task": "%s", "seed": %s}\n' "$(git -C "$ROOT" rev-parse --short=12 HEAD)" "$task" "$seed" \
    > "$KEEP/$model/source.json"
done
