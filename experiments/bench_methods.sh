#!/usr/bin/env bash
# Latency of every model shape of the distillation sweep (experiments/distill_methods.sh), for the
# speedup columns of docs/RESULTS.md: `condense bench` at batch 1 and 32, sequence length 128, on
# one model per row (the lowest seed that has one; latency does not depend on the seed or the task,
# only on the shape). Run it on a quiet
# machine: every row is measured in this one command so the ratios compare like with like.
# Usage: bash experiments/bench_methods.sh OUT_DIR   (the sweep's OUT_DIR; writes
# experiments/results/methods/bench/ROW.json, kept in the repository)
# Env: CONDENSE_THREADS (default 2).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh"
cd "$ROOT"
OUT="${1:?usage: bench_methods.sh OUT_DIR}"
THREADS="${CONDENSE_THREADS:-2}"
KEEP="${CONDENSE_RESULTS:-$ROOT/experiments/results}/methods/bench"
mkdir -p "$KEEP"
declare -A seen=()
for task in sst2 mrpc; do
  for dir in "$OUT/$task"/seed*/*/; do
    row="$(basename "$dir")"
    [ -f "$dir/metrics.json" ] || continue
    [ -n "${seen[$row]:-}" ] && continue
    seen[$row]=1
    echo "== $row ($task)" >&2
    "$BUILD/condense" bench --model "$dir" --batch 1,32 --seq 128 --format json --threads "$THREADS" \
      > "$KEEP/$row.json.tmp"
    mv "$KEEP/$row.json.tmp" "$KEEP/$row.json"
  done
done
# The commit of the binary that measured (each JSON carries it), not of the checkout.
sed -n 's/.*"commit": "\([^"]*\)".*/\1/p' "$KEEP/teacher.json" | head -n 1 > "$KEEP/commit"
