#!/usr/bin/env bash
# The main job on the embedded default: fine-tune all-MiniLM-L6-v2 on SST-2, distil a 3-layer
# student (with and without KD), quantize the KD student to int8 (static, calibrated), evaluate
# all four, and print the table of accuracy, size and latency. Installs and builds what is missing first (scripts/setup.sh). About 15 minutes on 2 cores.
#
# Defaults (documented in README.md): a seeded 16,000-example subset of SST-2 train; teacher
# 2 epochs at lr 5e-5; students 3 epochs at lr 1e-4 from teacher layers 0,2,4 (DistilBERT init);
# KD = Hinton soft targets, T = 2, alpha = 0.5. Override with the environment variables below.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"

OUT="${CONDENSE_RUN_DIR:-$ROOT/runs/default}"
LIMIT="${CONDENSE_TRAIN_LIMIT:-16000}"
SEED="${CONDENSE_SEED:-42}"
CLI="$BUILD/condense"
mkdir -p "$OUT"

step "1/5 fine-tune the teacher (all-MiniLM-L6-v2) on $LIMIT SST-2 examples"
"$CLI" finetune --model "$CONDENSE_TEACHER_DIR" --task sst2 --data data/glue/SST-2 \
  --train-limit "$LIMIT" --epochs 2 --lr 5e-5 --seed "$SEED" --save-every 200 --out "$OUT/teacher"

step "2/5 distil a 3-layer student (Hinton KD, T=2, alpha=0.5)"
"$CLI" distill --teacher "$OUT/teacher" --recipe recipes/distil-3layer.yaml --data data/glue/SST-2 \
  --train-limit "$LIMIT" --seed "$SEED" --save-every 200 --out "$OUT/student-kd"

step "3/5 the same student without KD (labels only, alpha=0)"
"$CLI" distill --teacher "$OUT/teacher" --recipe recipes/distil-3layer.yaml --data data/glue/SST-2 \
  --train-limit "$LIMIT" --seed "$SEED" --alpha 0 --save-every 200 --out "$OUT/student-nokd"

step "4/5 quantize the KD student: int8 weights and activations (recipes/quantize/int8-static.yaml)"
"$CLI" quantize --model "$OUT/student-kd" --recipe recipes/quantize/int8-static.yaml --task sst2 \
  --data data/glue/SST-2 --train-limit "$LIMIT" --seed "$SEED" --out "$OUT/student-kd-int8"

step "5/5 evaluate and benchmark"
"$CLI" report --task sst2 --data data/glue/SST-2 --out "$OUT/report.md" \
  --models "teacher (6L)=$OUT/teacher,student 3L KD=$OUT/student-kd,student 3L no KD=$OUT/student-nokd,student 3L KD int8=$OUT/student-kd-int8"
echo "table written to $OUT/report.md"
