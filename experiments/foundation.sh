#!/usr/bin/env bash
# docs/RESULTS.md, "Foundation" tables: teacher fine-tuned, 3-layer student with and without KD,
# on SST-2 (seeded 16k-example subset of train by default, CONDENSE_SST2_LIMIT=0 for all of it;
# full dev) and MRPC (full train, full dev), seeds 1-3.
# Usage: bash experiments/foundation.sh [OUT_DIR] [TASKS]   then   python3 experiments/summarize.py OUT_DIR
# TASKS is "sst2 mrpc" (default); two invocations with one task each run side by side, one thread
# each (CONDENSE_THREADS, default 1), which uses two cores better than one two-thread run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh"
cd "$ROOT"
OUT="${1:-$ROOT/runs/foundation}"
CLI="$BUILD/condense"
TASKS="${2:-sst2 mrpc}"
SEEDS="${CONDENSE_SEEDS:-1 2 3}"
THREADS="${CONDENSE_THREADS:-1}"
SST2_LIMIT="${CONDENSE_SST2_LIMIT:-16000}"   # 0 = all 67,349 training sentences
SST2_EPOCHS="${CONDENSE_SST2_EPOCHS:-2}"     # teacher and students; the full-data runs use 1
# CONDENSE_WITH_PKD=1 adds a PKD-skip student (recipes/pkd-skip-3layer.yaml) to each SST-2 seed.
mkdir -p "$OUT"

run() {  # skip runs already finished (their folder holds metrics.json)
  local out="$1"; shift
  [ -f "$out/metrics.json" ] && return 0
  echo "== $out" >&2
  "$CLI" "$@" --quiet --threads "$THREADS" --save-every 100 --resume --out "$out"
}

for seed in $SEEDS; do
  if [[ " $TASKS " == *" sst2 "* ]]; then
  d="$OUT/sst2/seed$seed"
  run "$d/teacher" finetune --model "$CONDENSE_TEACHER_DIR" --task sst2 --data data/glue/SST-2 \
    --train-limit "$SST2_LIMIT" --epochs "$SST2_EPOCHS" --lr 5e-5 --seed "$seed"
  run "$d/student-kd" distill --teacher "$d/teacher" --recipe recipes/distil-3layer.yaml --task sst2 \
    --data data/glue/SST-2 --train-limit "$SST2_LIMIT" --epochs "$SST2_EPOCHS" --seed "$seed"
  run "$d/student-nokd" distill --teacher "$d/teacher" --recipe recipes/distil-3layer.yaml --task sst2 \
    --data data/glue/SST-2 --train-limit "$SST2_LIMIT" --epochs "$SST2_EPOCHS" --seed "$seed" --alpha 0
  if [ -n "${CONDENSE_WITH_PKD:-}" ]; then  # KD with intermediate layers: same student, init, epochs
  run "$d/student-pkd" distill --teacher "$d/teacher" --recipe recipes/pkd-skip-3layer.yaml --task sst2 \
    --data data/glue/SST-2 --train-limit "$SST2_LIMIT" --epochs "$SST2_EPOCHS" --seed "$seed"
  fi
  fi
  if [[ " $TASKS " == *" mrpc "* ]]; then
  d="$OUT/mrpc/seed$seed"
  run "$d/teacher" finetune --model "$CONDENSE_TEACHER_DIR" --task mrpc --data data/glue/MRPC \
    --epochs 3 --lr 5e-5 --seed "$seed"
  run "$d/student-kd" distill --teacher "$d/teacher" --recipe recipes/distil-3layer.yaml --task mrpc \
    --data data/glue/MRPC --epochs 3 --seed "$seed"
  run "$d/student-nokd" distill --teacher "$d/teacher" --recipe recipes/distil-3layer.yaml --task mrpc \
    --data data/glue/MRPC --epochs 3 --seed "$seed" --alpha 0
  fi
done
