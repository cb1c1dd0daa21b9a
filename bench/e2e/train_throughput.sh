#!/usr/bin/env bash
# Training throughput of condense against the PyTorch + transformers peer (bench/e2e/python_peer.py),
# measured in one command on the same machine, data subset, batch size and thread count; and the
# speedup that caching the teacher's logits gives distillation; each loop in fp32 and with bf16
# autocast (--bf16 on both sides).
# Usage: bash bench/e2e/train_throughput.sh [LIMIT] [THREADS]     (prints a markdown table)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/setup.sh"
cd "$ROOT"
LIMIT="${1:-2048}"
THREADS="${2:-$(nproc)}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
CLI="$BUILD/condense"
common=(--task sst2 --data data/glue/SST-2 --train-limit "$LIMIT" --epochs 1 --batch-size 32 --threads "$THREADS" --quiet)
eps() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['train']['examples_per_second'])" "$1/metrics.json"; }

peer() {  # peer MODEL [ARGS...]: its examples per second
  "$CONDENSE_PYTHON" bench/e2e/python_peer.py --model "$1" --data data/glue/SST-2/train.tsv --limit "$LIMIT" \
    --threads "$THREADS" "${@:2}" 2>/dev/null | tail -1 | python3 -c "import json,sys; print(json.load(sys.stdin)['examples_per_second'])"
}

"$CLI" finetune --model "$CONDENSE_TEACHER_DIR" "${common[@]}" --out "$OUT/teacher" >/dev/null
c_ft=$(eps "$OUT/teacher")
"$CLI" finetune --model "$CONDENSE_TEACHER_DIR" "${common[@]}" --bf16 --out "$OUT/teacher-bf16" >/dev/null
c_ftb=$(eps "$OUT/teacher-bf16")
"$CLI" distill --teacher "$OUT/teacher" --layers 3 "${common[@]}" --out "$OUT/kd" >/dev/null
c_kd=$(eps "$OUT/kd")
"$CLI" distill --teacher "$OUT/teacher" --layers 3 "${common[@]}" --bf16 --out "$OUT/kd-bf16" >/dev/null
c_kdb=$(eps "$OUT/kd-bf16")
cache_s=$(python3 -c "import json; print(json.load(open('$OUT/kd/metrics.json'))['distill']['teacher_cache_seconds'])")
"$CLI" distill --teacher "$OUT/teacher" --layers 3 "${common[@]}" --no-teacher-cache --out "$OUT/kd-nocache" >/dev/null
c_nc=$(eps "$OUT/kd-nocache")
p_ft=$(peer "$CONDENSE_TEACHER_DIR")
p_ftb=$(peer "$CONDENSE_TEACHER_DIR" --bf16)
p_kd=$(peer "$OUT/teacher" --mode distill)
p_kdb=$(peer "$OUT/teacher" --mode distill --bf16)

python3 - "$c_ft" "$p_ft" "$c_kd" "$p_kd" "$c_nc" "$cache_s" "$c_ftb" "$p_ftb" "$c_kdb" "$p_kdb" "$LIMIT" "$THREADS" <<'PY'
import sys
c_ft, p_ft, c_kd, p_kd, c_nc, cache_s, c_ftb, p_ftb, c_kdb, p_kdb = map(float, sys.argv[1:11])
limit, threads = sys.argv[11], sys.argv[12]
print(f"| loop ({limit} SST-2 examples, 1 epoch, batch 32, {threads} threads) | condense ex/s | PyTorch+transformers ex/s | condense / peer | condense bf16 / fp32 |")
print("|---|---:|---:|---:|---:|")
print(f"| finetune teacher (6 layers), fp32 | {c_ft:.0f} | {p_ft:.0f} | {c_ft / p_ft:.2f}x | |")
print(f"| finetune teacher (6 layers), bf16 autocast | {c_ftb:.0f} | {p_ftb:.0f} | {c_ftb / p_ftb:.2f}x | {c_ftb / c_ft:.2f}x |")
print(f"| distill 3-layer student, cached teacher logits, fp32 | {c_kd:.0f} | {p_kd:.0f} | {c_kd / p_kd:.2f}x | |")
print(f"| distill 3-layer student, cached teacher logits, bf16 autocast | {c_kdb:.0f} | {p_kdb:.0f} | {c_kdb / p_kdb:.2f}x | {c_kdb / c_kd:.2f}x |")
print(f"\nteacher caching: distill {c_kd:.0f} ex/s with the cache vs {c_nc:.0f} ex/s with a teacher forward per batch "
      f"= {c_kd / c_nc:.2f}x per epoch (one-off cache cost {cache_s:.1f} s).")
PY
