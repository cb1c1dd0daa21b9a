#!/usr/bin/env bash
# docs/RESULTS.md, "Foundation" tables: teacher fine-tuned, 3-layer student with and without KD,
# on SST-2 (seeded 16k-example subset of train, full dev) and MRPC (full train, full dev), seeds 1-3.
# Usage: bash experiments/foundation.sh [OUT_DIR]   then   python3 experiments/summarize.py OUT_DIR
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh"
cd "$ROOT"
OUT="${1:-$ROOT/runs/foundation}"
CLI="$BUILD/condense"
SEEDS="${CONDENSE_SEEDS:-1 2 3}"
mkdir -p "$OUT"

run() {  # skip runs already finished (their folder holds metrics.json)
  local out="$1"; shift
  [ -f "$out/metrics.json" ] && return 0
  echo "== $out" >&2
  "$CLI" "$@" --quiet --out "$out"
}

for seed in $SEEDS; do
  d="$OUT/sst2/seed$seed"
  run "$d/teacher" finetune --model "$CONDENSE_TEACHER_DIR" --task sst2 --data data/glue/SST-2 \
    --train-limit 16000 --epochs 2 --lr 5e-5 --seed "$seed"
  run "$d/student-kd" distill --teacher "$d/teacher" --recipe recipes/distil-3layer.yaml --task sst2 \
    --data data/glue/SST-2 --train-limit 16000 --seed "$seed"
  run "$d/student-nokd" distill --teacher "$d/teacher" --recipe recipes/distil-3layer.yaml --task sst2 \
    --data data/glue/SST-2 --train-limit 16000 --seed "$seed" --alpha 0

  d="$OUT/mrpc/seed$seed"
  run "$d/teacher" finetune --model "$CONDENSE_TEACHER_DIR" --task mrpc --data data/glue/MRPC \
    --epochs 3 --lr 5e-5 --seed "$seed"
  run "$d/student-kd" distill --teacher "$d/teacher" --recipe recipes/distil-3layer.yaml --task mrpc \
    --data data/glue/MRPC --epochs 4 --seed "$seed"
  run "$d/student-nokd" distill --teacher "$d/teacher" --recipe recipes/distil-3layer.yaml --task mrpc \
    --data data/glue/MRPC --epochs 4 --seed "$seed" --alpha 0
done
