#!/usr/bin/env bash
# Latency of every model shape of the distillation sweep (experiments/distill_methods.sh), for the
# speedup columns of docs/RESULTS.md: `condense bench` at batch 1 and 32, sequence length 128, on
# one model per shape (experiments/summarize_methods.py's shape_key: latency depends on the
# architecture and its sizes, not on the method, seed or task, so every row of a shape shows the
# one measurement instead of per-row noise). Run it on a quiet machine: every shape is measured in
# this one command so the ratios compare like with like; a shape with no model on disk is left out.
# Usage: bash experiments/bench_methods.sh OUT_DIR   (the sweep's OUT_DIR; replaces the files in
# experiments/results/methods/bench/, one ROW.json per shape named after the row timed)
# Env: CONDENSE_THREADS (default 2), CONDENSE_BENCH_ROUNDS (default 3).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh"
cd "$ROOT"
OUT="${1:?usage: bench_methods.sh OUT_DIR}"
THREADS="${CONDENSE_THREADS:-2}"
KEEP="${CONDENSE_RESULTS:-$ROOT/experiments/results}/methods/bench"
mkdir -p "$KEEP"
ROUNDS="${CONDENSE_BENCH_ROUNDS:-3}"
RAW="$(mktemp -d)"
trap 'rm -rf "$RAW"' EXIT
bench() {  # bench MODEL_DIR OUT_JSON [--runtime torch]
  "$BUILD/condense" bench --model "$1" --batch 1,32 --seq 128 --format json --threads "$THREADS" "${@:3}" \
    > "$2" 2> "$RAW/err"
}
# One model per shape, chosen once. The teacher first: the self-distilled student shares its
# shape, and the speedups need it. General stages (gd-*) start rows; they are not rows of the table.
declare -A seen=()
models=()
teacher_dir=""
for dir in "$OUT"/*/seed*/teacher/ "$OUT"/sst2/seed*/*/ "$OUT"/mrpc/seed*/*/; do
  row="$(basename "$dir")"
  [ -f "$dir/metrics.json" ] && [[ "$row" != gd-* ]] || continue
  key="$(python3 experiments/summarize_methods.py --shape-key "$dir/metrics.json")"
  [ -n "${seen[$key]:-}" ] && continue
  seen[$key]=1
  models+=("$dir")
  [ "$row" = teacher ] && [ -z "$teacher_dir" ] && teacher_dir="$dir"
done
# Every shape once per round, ROUNDS rounds, and each keeps its fastest p50 per batch: the
# machine's speed drifts over minutes, and interleaving gives every shape the same chances.
for round in $(seq "$ROUNDS"); do
  torch_rows=0
  mkdir -p "$RAW/r$round"
  for dir in "${models[@]}"; do
    row="$(basename "$dir")"
    echo "== round $round: $row (${dir#$OUT/})" >&2
    if ! bench "$dir" "$RAW/r$round/$row.json"; then
      # Shapes the inference runtime does not run (MobileBERT bottlenecks, norms other than
      # LayerNorm, the BiLSTM and TextCNN) are timed in the training-time code instead, and their
      # speedup is taken against the teacher timed there too.
      grep -q "not supported by the runtime" "$RAW/err" || { cat "$RAW/err" >&2; exit 1; }
      bench "$dir" "$RAW/r$round/$row.json" --runtime torch || { cat "$RAW/err" >&2; exit 1; }
      torch_rows=1
    fi
  done
  if [ "$torch_rows" = 1 ]; then
    echo "== round $round: teacher (eager LibTorch)" >&2
    bench "$teacher_dir" "$RAW/r$round/teacher.torch.json" --runtime torch || { cat "$RAW/err" >&2; exit 1; }
  fi
done
python3 - "$RAW" "$KEEP" <<'EOF'
import json, pathlib, sys
raw, keep = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for f in keep.glob("*.json"):  # this command's measurements replace the last command's, whole
    f.unlink()
for f in sorted((raw / "r1").glob("*.json")):
    best = {}
    for r in sorted(raw.glob("r*")):
        for b in json.loads((r / f.name).read_text()):
            if b["batch"] not in best or b["p50_ms"] < best[b["batch"]]["p50_ms"]:
                best[b["batch"]] = b
    tmp = keep / (f.name + ".tmp")
    tmp.write_text(json.dumps([best[k] for k in sorted(best)], indent=2) + "\n")
    tmp.replace(keep / f.name)
EOF
# The commit of the binary that measured (each JSON carries it), not of the checkout.
sed -n 's/.*"commit": "\([^"]*\)".*/\1/p' "$KEEP/teacher.json" | head -n 1 > "$KEEP/commit"
