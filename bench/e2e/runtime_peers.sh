#!/usr/bin/env bash
# The runtime side by side: condense's inference runtime (fp32, bf16, int8), eager LibTorch
# (condense bench --runtime torch) and ONNX Runtime (fp32 and its dynamic int8, best optimisation
# level), on the MiniLM-L6 teacher and a 3-layer student, batch 1 and 32, sequence 32, 128 and 512,
# the same thread count and random inputs everywhere, all in one command.
#
#   bash bench/e2e/runtime_peers.sh [OUT_DIR]          (default runs/bench-runtime)
#
# Writes OUT_DIR/r<round>/<model>-<runtime>-<precision>.json(l), then OUT_DIR/runtime.md (the
# tables of docs/RESULTS.md, with ratios to the physical limit) and OUT_DIR/latency-vs-seq.png.
# A shared or virtual machine's speed drifts by ±10 % over minutes, so the whole set runs in
# CONDENSE_BENCH_ROUNDS rounds (default 3), every runtime once per round, and the tables take
# each shape's fastest p50 over the rounds: all runtimes get the same chances.
# Environment: CONDENSE_THREADS (default 2), CONDENSE_BENCH_SEQ (default 32,128,512),
# CONDENSE_BENCH_SECONDS (default 1 per shape), CONDENSE_NO_BUILD=1 to use the existing build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/setup.sh"
OUT="${1:-$ROOT/runs/bench-runtime}"
THREADS="${CONDENSE_THREADS:-2}"
SEQ="${CONDENSE_BENCH_SEQ:-32,128,512}"
SECONDS_PER="${CONDENSE_BENCH_SECONDS:-1}"
ROUNDS="${CONDENSE_BENCH_ROUNDS:-3}"
mkdir -p "$OUT"

# The peers (ONNX Runtime, onnx, matplotlib) go into the same venv, once.
"$CONDENSE_PYTHON" -c 'import onnxruntime, onnx, matplotlib' 2>/dev/null \
  || "$CONDENSE_PYTHON" -m pip install -q -r "$ROOT/bench/e2e/requirements-peers.txt"

STUDENT="$OUT/student-3l"
[ -f "$STUDENT/model.safetensors" ] || "$CONDENSE_PYTHON" "$ROOT/bench/e2e/make_student.py" "$CONDENSE_TEACHER_DIR" "$STUDENT"

# The summary reads the shapes (operation counts) from these copies, so OUT_DIR stands alone.
cp "$CONDENSE_TEACHER_DIR/config.json" "$OUT/teacher-config.json"
cp "$STUDENT/config.json" "$OUT/student-config.json"
for round in $(seq 1 "$ROUNDS"); do
  R="$OUT/r$round"
  mkdir -p "$R"
  for entry in "teacher=$CONDENSE_TEACHER_DIR" "student=$STUDENT"; do
    name="${entry%%=*}"; dir="${entry#*=}"
    for prec in fp32 bf16 int8; do
      echo "== round $round, $name: condense runtime $prec" >&2
      "$CONDENSE_CLI" bench --model "$dir" --precision "$prec" --batch 1,32 --seq "$SEQ" --threads "$THREADS" \
        --seconds "$SECONDS_PER" --format json > "$R/$name-engine-$prec.json.tmp"
      mv "$R/$name-engine-$prec.json.tmp" "$R/$name-engine-$prec.json"
    done
    echo "== round $round, $name: eager LibTorch fp32" >&2
    "$CONDENSE_CLI" bench --model "$dir" --runtime torch --batch 1,32 --seq "$SEQ" --threads "$THREADS" \
      --seconds "$SECONDS_PER" --format json > "$R/$name-torch-fp32.json.tmp"
    mv "$R/$name-torch-fp32.json.tmp" "$R/$name-torch-fp32.json"
    echo "== round $round, $name: ONNX Runtime fp32 and int8" >&2
    "$CONDENSE_PYTHON" "$ROOT/bench/e2e/ort_peer.py" --model "$dir" --batch 1,32 --seq "$SEQ" --threads "$THREADS" \
      --seconds "$SECONDS_PER" --precision fp32,int8 2>"$R/$name-ort.log" > "$R/$name-ort.jsonl.tmp"
    mv "$R/$name-ort.jsonl.tmp" "$R/$name-ort.jsonl"
  done
done
"$CONDENSE_PYTHON" "$ROOT/bench/e2e/summarize_runtime.py" "$OUT" > "$OUT/runtime.md.tmp"
mv "$OUT/runtime.md.tmp" "$OUT/runtime.md"
cat "$OUT/runtime.md"
