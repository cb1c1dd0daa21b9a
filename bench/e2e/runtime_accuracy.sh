#!/usr/bin/env bash
# Dev-set accuracy of a model folder through the inference runtime, with attention in bf16 (the
# int8/bf16 engines' default on AVX-512 BF16) and in fp32 (--fp32-attention), scored against the
# gold labels: what the runtime's own arithmetic costs on real data.
#   bash bench/e2e/runtime_accuracy.sh MODEL_DIR mrpc|sst2 [PRECISION]   (default precision auto)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/setup.sh"
MODEL="${1:?usage: runtime_accuracy.sh MODEL_DIR mrpc|sst2 [PRECISION]}"
TASK="${2:?usage: runtime_accuracy.sh MODEL_DIR mrpc|sst2 [PRECISION]}"
PREC="${3:-auto}"
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
case "$TASK" in
  mrpc) tail -n +2 "$ROOT/data/glue/MRPC/dev.tsv" | awk -F'\t' '{print $4"\t"$5}' > "$TMP/in.txt"
        tail -n +2 "$ROOT/data/glue/MRPC/dev.tsv" | cut -f1 > "$TMP/gold.txt" ;;
  sst2) tail -n +2 "$ROOT/data/glue/SST-2/dev.tsv" | cut -f1 > "$TMP/in.txt"
        tail -n +2 "$ROOT/data/glue/SST-2/dev.tsv" | cut -f2 > "$TMP/gold.txt" ;;
  *) echo "runtime_accuracy.sh: TASK must be mrpc or sst2, not '$TASK'" >&2; exit 2 ;;
esac
"$CONDENSE_CLI" run --model "$MODEL" --input "$TMP/in.txt" --precision "$PREC" > "$TMP/bf16-attention.tsv"
"$CONDENSE_CLI" run --model "$MODEL" --input "$TMP/in.txt" --precision "$PREC" --fp32-attention > "$TMP/fp32-attention.tsv"
"$CONDENSE_PYTHON" - "$TMP" <<'PY'
import pathlib, sys
d = pathlib.Path(sys.argv[1])
gold = [int(l) for l in (d / "gold.txt").read_text().split()]
def score(p):
    tp = sum(a == 1 and b == 1 for a, b in zip(p, gold)); fp = sum(a == 1 and b == 0 for a, b in zip(p, gold))
    fn = sum(a == 0 and b == 1 for a, b in zip(p, gold))
    return sum(a == b for a, b in zip(p, gold)) / len(gold), 2 * tp / max(1, 2 * tp + fp + fn)
preds = {}
for name in ["fp32-attention", "bf16-attention"]:
    preds[name] = [int(l.split("\t")[0]) for l in (d / f"{name}.tsv").read_text().splitlines()]
    acc, f1 = score(preds[name])
    print(f"{name}: accuracy {100 * acc:.2f}, F1 {100 * f1:.2f} ({len(gold)} examples)")
same = sum(a == b for a, b in zip(preds["fp32-attention"], preds["bf16-attention"]))
print(f"same prediction: {same} of {len(gold)}")
PY
