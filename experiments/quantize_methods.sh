#!/usr/bin/env bash
# docs/RESULTS.md, "Quantization side by side" (issue: quantization that really shrinks and
# really runs). For each seed: the teacher and the 3-layer Hinton-KD student of the distillation
# sweep (experiments/distill_methods.sh rows teacher and kd-3, trained here when missing), then
# one quantized model per row below, each in OUT/<task>/seed<N>/<model>-q/<row>/ with metrics.json
# (dev metrics of the file as loaded back, bytes, per-layer errors), kept in the repository as
# experiments/results/quantize/<task>/seed<N>/<model>/<row>.json; rows kept there are skipped.
# Usage: bash experiments/quantize_methods.sh OUT_DIR TASK [ROWS...]
# Env: CONDENSE_SEEDS (default "1 2 3"), CONDENSE_THREADS (default 1), CONDENSE_QMODELS
#      (default "teacher kd-3").
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../scripts/setup.sh"
cd "$ROOT"
OUT="${1:?usage: quantize_methods.sh OUT_DIR TASK [ROWS...]}"
TASK="${2:?usage: quantize_methods.sh OUT_DIR TASK [ROWS...]}"
shift 2
CLI="$BUILD/condense"
SEEDS="${CONDENSE_SEEDS:-1 2 3}"
THREADS="${CONDENSE_THREADS:-1}"
MODELS="${CONDENSE_QMODELS:-teacher kd-3}"
# QAT rows fine-tune one epoch on QAT_LIMIT examples of the training subset: all of MRPC, a seeded
# 4,000 of SST-2's 16k (one QAT epoch over 16k sentences costs as much as the whole PTQ table).
case "$TASK" in
  mrpc) DATA=data/glue/MRPC; LIMIT=0; QAT_LIMIT=0 ;;
  sst2) DATA=data/glue/SST-2; LIMIT="${CONDENSE_SST2_LIMIT:-16000}"; QAT_LIMIT="${CONDENSE_QAT_LIMIT:-4000}" ;;
  *) echo "quantize_methods.sh: TASK must be mrpc or sst2, not '$TASK'" >&2; exit 2 ;;
esac
ALL_ROWS="fp16 bf16 int8-dynamic int8-static-minmax int8-static-ema int8-static-percentile int8-static-mse
  int8-static-entropy int8-static-tensor int8-qat w4a8 int4-group int4-group-qat int2-mixed-qat log4 kmeans16
  kmeans256 binary-qat"
ROWS="${*:-$ALL_ROWS}"

KEEP="${CONDENSE_RESULTS:-$ROOT/experiments/results}/quantize"

for seed in $SEEDS; do
  # The float models: the distillation sweep's own runs (same command, same folders).
  CONDENSE_SEEDS="$seed" CONDENSE_NEED_ROWS=kd-3 bash "$HERE/distill_methods.sh" "$OUT" "$TASK" kd-3
  d="$OUT/$TASK/seed$seed"
  for model in $MODELS; do
    src="$d/$model"
    for row in $ROWS; do
      out="$d/$model-q/$row"
      kept="$KEEP/$TASK/seed$seed/$model/$row.json"
      [ -f "$kept" ] && continue
      echo "== $out" >&2
      lim="$LIMIT"; [[ "$row" == *qat* ]] && lim="$QAT_LIMIT"
      q=(quantize --model "$src" --out "$out" --task "$TASK" --data "$DATA" --train-limit "$lim" --seed "$seed"
         --threads "$THREADS" --quiet)
      # Every row is a recipe (recipes/), QAT rows guided by the seed's teacher (Hinton KD).
      R=recipes/quantize
      t=(--teacher "$d/teacher")
      case "$row" in
        fp16)       "$CLI" "${q[@]}" --recipe $R/fp16.yaml ;;
        bf16)       "$CLI" "${q[@]}" --recipe $R/bf16.yaml ;;
        int8-dynamic) "$CLI" "${q[@]}" --recipe $R/int8-dynamic.yaml ;;
        int8-static-tensor) "$CLI" "${q[@]}" --recipe $R/int8-static.yaml --granularity tensor ;;
        int8-static-*) "$CLI" "${q[@]}" --recipe $R/int8-static.yaml --observer "${row#int8-static-}" ;;
        int8-qat)   "$CLI" "${q[@]}" --recipe $R/q8bert.yaml "${t[@]}" ;;
        w4a8)       "$CLI" "${q[@]}" --recipe $R/w4a8.yaml ;;
        int4-group) "$CLI" "${q[@]}" --recipe $R/int4-group.yaml ;;
        int4-group-qat) "$CLI" "${q[@]}" --recipe $R/int4-group.yaml --qat "${t[@]}" ;;
        int2-mixed-qat) "$CLI" "${q[@]}" --recipe $R/qbert-2bit-mixed.yaml "${t[@]}" ;;
        binary-qat) "$CLI" "${q[@]}" --recipe $R/binary-qat.yaml "${t[@]}" ;;
        log4)       "$CLI" "${q[@]}" --recipe $R/log4.yaml ;;
        kmeans16)   "$CLI" "${q[@]}" --recipe $R/kmeans.yaml ;;
        kmeans256)  "$CLI" "${q[@]}" --recipe $R/kmeans.yaml --bits 8 --granularity tensor ;;
        *) echo "quantize_methods.sh: unknown row '$row'" >&2; exit 2 ;;
      esac
      mkdir -p "$(dirname "$kept")"
      cp "$out/metrics.json" "$kept"
    done
  done
done
