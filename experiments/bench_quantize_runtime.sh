#!/usr/bin/env bash
# The quantized formats through the inference runtime: the teacher and a 3-layer student (teacher
# layers 0, 2, 4; latency depends on the shapes, not on the weights' values), each quantized from
# its recipe (ranges calibrated on a seeded 512 SST-2 training sentences), then `condense bench`
# with the folder as stored (--precision auto: int8 products where the folder holds int8 codes
# and quantized activations) at batch 1 and 32, sequence 128, every row in the same rounds so the
# ratios compare like with like; each row keeps its fastest round. Run on a quiet machine.
# Usage: bash experiments/bench_quantize_runtime.sh [WORK_DIR]   (default runs/bench-quantize-runtime)
# Writes experiments/results/quantize/bench-runtime/<model>/<row>.json (read by summarize_quantize.py).
# Env: CONDENSE_THREADS (default 2), CONDENSE_BENCH_ROUNDS (default 3).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh"
cd "$ROOT"
WORK="${1:-$ROOT/runs/bench-quantize-runtime}"
THREADS="${CONDENSE_THREADS:-2}"
ROUNDS="${CONDENSE_BENCH_ROUNDS:-3}"
KEEP="${CONDENSE_RESULTS:-$ROOT/experiments/results}/quantize/bench-runtime"
ROWS="bf16 int8-dynamic int8-static-minmax w4a8"
mkdir -p "$WORK"
[ -f "$WORK/kd-3/model.safetensors" ] || "$CONDENSE_PYTHON" bench/e2e/make_student.py "$CONDENSE_TEACHER_DIR" "$WORK/kd-3"
for model in teacher kd-3; do
  src="$CONDENSE_TEACHER_DIR"; [ "$model" = kd-3 ] && src="$WORK/kd-3"
  for row in $ROWS; do
    out="$WORK/$model-q/$row"
    [ -f "$out/metrics.json" ] && continue
    echo "== quantize $model $row" >&2
    recipe="recipes/quantize/$row.yaml"; [ "$row" = int8-static-minmax ] && recipe=recipes/quantize/int8-static.yaml
    "$CONDENSE_CLI" quantize --model "$src" --out "$out" --task sst2 --data data/glue/SST-2 --train-limit 512 --seed 1 \
      --recipe "$recipe" --threads "$THREADS" --quiet >/dev/null
  done
done
for round in $(seq 1 "$ROUNDS"); do
  for model in teacher kd-3; do
    src="$CONDENSE_TEACHER_DIR"; [ "$model" = kd-3 ] && src="$WORK/kd-3"
    for row in fp32 $ROWS; do
      dir="$src"; [ "$row" = fp32 ] || dir="$WORK/$model-q/$row"
      echo "== round $round: bench $model $row" >&2
      mkdir -p "$WORK/r$round/$model"
      "$CONDENSE_CLI" bench --model "$dir" --batch 1,32 --seq 128 --seconds 2 --format json --threads "$THREADS" \
        > "$WORK/r$round/$model/$row.json"
    done
  done
done
# Each row's fastest round (by its batch-32 p50) is kept.
"$CONDENSE_PYTHON" - "$WORK" "$KEEP" <<'PY'
import json, pathlib, sys, os
work, keep = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
best = {}
for f in work.glob("r*/*/*.json"):
    rows = json.loads(f.read_text())
    key = (f.parent.name, f.stem)
    b32 = next(r["p50_ms"] for r in rows if r["batch"] == 32)
    if key not in best or b32 < best[key][0]:
        best[key] = (b32, rows)
for (model, row), (_, rows) in best.items():
    out = keep / model / f"{row}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rows, indent=2) + "\n")
    os.replace(tmp, out)
PY
echo "kept in $KEEP" >&2
