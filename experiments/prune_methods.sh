#!/usr/bin/env bash
# docs/RESULTS.md, "Pruning side by side" (issue: pruning, LayerDrop, low-rank and sharing with
# physical shrinking). For each seed: the teacher and the 3-layer Hinton-KD student of the
# distillation sweep (experiments/distill_methods.sh rows teacher and kd-3, trained here when
# missing), then one pruned model per row below, each in OUT/<task>/seed<N>/<model>-p/<row>/ with
# metrics.json (dev metrics of the file as loaded back, parameters, bytes), kept in the repository
# as experiments/results/prune/<task>/seed<N>/<model>/<row>.json; rows kept there are skipped, so an
# interrupted sweep resumes where it stopped.
# Usage: bash experiments/prune_methods.sh OUT_DIR TASK [ROWS...]
# Env: CONDENSE_SEEDS (default "1 2 3"), CONDENSE_THREADS (default 1), CONDENSE_PMODELS
#      (default "teacher kd-3"; add teacher-ld for the LayerDrop rows, pretrained for pruning while
#      fine-tuning from the pre-trained checkpoint), CONDENSE_PRUNE_LIMIT (SST-2 fine-tuning subset, default 4000),
#      CONDENSE_PRUNE_EPOCHS (default 2).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../scripts/setup.sh"
cd "$ROOT"
OUT="${1:?usage: prune_methods.sh OUT_DIR TASK [ROWS...]}"
TASK="${2:?usage: prune_methods.sh OUT_DIR TASK [ROWS...]}"
shift 2
CLI="$BUILD/condense"
SEEDS="${CONDENSE_SEEDS:-1 2 3}"
THREADS="${CONDENSE_THREADS:-1}"
MODELS="${CONDENSE_PMODELS:-teacher kd-3}"
EPOCHS="${CONDENSE_PRUNE_EPOCHS:-2}"
# Pruning fine-tunes on all of MRPC, and on a seeded 4,000 of the SST-2 sentences the float models
# were trained on (every row the same subset): a 16k-sentence pass per row does not fit 2 cores.
case "$TASK" in
  mrpc) DATA=data/glue/MRPC; LIMIT=0 ;;
  sst2) DATA=data/glue/SST-2; LIMIT="${CONDENSE_PRUNE_LIMIT:-4000}" ;;
  *) echo "prune_methods.sh: TASK must be mrpc or sst2, not '$TASK'" >&2; exit 2 ;;
esac
# Row names: <criterion>-<sparsity %> (unstructured, cubic schedule; criterion magnitude, movement,
# taylor, l1 or l2), <units>-<% of encoder weights>
# (structured, physically removed), nm-2-4; depth-N (every-other layers kept, no retraining: the
# LayerDrop comparison, on "teacher-ld" — the teacher fine-tuned with LayerDrop 0.2 — and on the
# plain teacher; depth-N-imp keeps the N layers whose removal alone costs the most loss instead);
# svd-rR / svd-eE (low rank at rank R or energy E %), albert-eE (factorized embeddings),
# share-all|attention|ffn (ALBERT sharing from averaged layers; share-all-scratch: the shared
# blocks freshly initialised, then distilled), hash-C (HashedNets);
# soft-movement-lL (Sanh et al.'s soft movement at final λ = L: the sparsity is its result); a row
# ending in -long (e.g. movement-90-long) runs with 8x the fine-tuning budget (SST-2: 16,000
# sentences and 4 epochs, MRPC: 8 epochs), for the movement-vs-magnitude comparison;
# entropy-neurons-30 is neurons-30 with FFN neurons ranked by activation entropy (Luo & Wu 2017)
# instead of Michel et al.'s gradient; heads+neurons-lkd-P adds CoFi's layer-wise distillation
# (hidden-state MSE, layer i ← teacher layer i).
# Suffixes (in this order): -sN N iterative steps with the same total fine-tuning (2 epochs per step
# at 4 steps become 1 at 8), -recE 1 epoch after each step and E more at the final shape
# (--final-epochs; rec4 spends the same 8 epochs as the plain row), -joint heads and neurons ranked
# together per weight (--joint), -2x twice the budget (SST-2: 8,000 sentences; MRPC: twice the
# epochs), -bf16 fine-tuning under bf16 autocast (--bf16), e.g. heads+neurons-lkd-50-rec4-joint.
ALL_ROWS="movement-90 magnitude-90 heads+neurons-50 heads+neurons-lkd-50 taylor-90 movement-70 magnitude-70 taylor-70 movement-50
  magnitude-50 taylor-50 heads+neurons-30 heads-30 neurons-30 neurons-50 nm-2-4 depth-4 depth-3 depth-2
  svd-r128 svd-r64 svd-e90 albert-e128 share-all share-attention share-ffn share-all-scratch hash-8 l1-90 l2-90 entropy-neurons-30"
ROWS="${*:-$ALL_ROWS}"

KEEP="${CONDENSE_RESULTS:-$ROOT/experiments/results}/prune"

for seed in $SEEDS; do
  # The seed's teacher always (every row distils from it); the student only when it is pruned.
  need=""; [[ " $MODELS " == *" kd-3 "* ]] && need=kd-3
  CONDENSE_SEEDS="$seed" CONDENSE_NEED_ROWS="$need" bash "$HERE/distill_methods.sh" "$OUT" "$TASK" kd-3
  d="$OUT/$TASK/seed$seed"
  if [[ " $MODELS " == *" teacher-ld "* ]] && [ ! -f "$d/teacher-ld/metrics.json" ]; then
    # The distillation sweep's teacher recipe, with LayerDrop (Fan et al. 2020) at p = 0.2.
    case "$TASK" in mrpc) TE=3; TL=0 ;; sst2) TE=2; TL="${CONDENSE_SST2_LIMIT:-16000}" ;; esac
    "$CLI" finetune --model "$CONDENSE_TEACHER_DIR" --out "$d/teacher-ld" --task "$TASK" --data "$DATA" \
      --train-limit "$TL" --seed "$seed" --epochs "$TE" --lr 5e-5 --layerdrop 0.2 --threads "$THREADS" --quiet
  fi
  if [ -f "$d/teacher-ld/metrics.json" ]; then
    mkdir -p "$KEEP/$TASK/seed$seed/teacher-ld"
    cp "$d/teacher-ld/metrics.json" "$KEEP/$TASK/seed$seed/teacher-ld/unpruned.json"
  fi
  for model in $MODELS; do
    src="$d/$model"
    # "pretrained": pruning while fine-tuning from the pre-trained checkpoint, as Sanh et al. 2020
    # compare movement and magnitude pruning (KD from the seed's fine-tuned teacher, 3 epochs).
    [ "$model" = pretrained ] && src="$CONDENSE_TEACHER_DIR"
    for row in $ROWS; do
      [ "$model" = teacher-ld ] && [[ "$row" != depth-* ]] && continue
      [ "$model" = pretrained ] && [[ "$row" != movement-* && "$row" != magnitude-* && "$row" != taylor-* && "$row" != soft-* ]] && continue
      out="$d/$model-p/$row"
      kept="$KEEP/$TASK/seed$seed/$model/$row.json"
      [ -f "$kept" ] && continue
      echo "== $out" >&2
      # Every row distils from the seed's unpruned teacher (Hinton KD, alpha 0.5, T 2).
      ep="$EPOCHS"; [[ "$row" == depth-* ]] && ep=0  # LayerDrop's claim: any depth without retraining
      [ "$model" = pretrained ] && ep=3
      lim="$LIMIT"
      name="$row"
      extra=()
      if [[ "$name" == *-bf16 ]]; then name="${name%-bf16}"; extra+=(--bf16); fi
      if [[ "$name" == *-2x ]]; then
        name="${name%-2x}"
        if [ "$TASK" = sst2 ]; then lim=$((LIMIT * 2)); else ep=$((ep * 2)); fi
      fi
      if [[ "$name" == *-joint ]]; then name="${name%-joint}"; extra+=(--joint); fi
      if [[ "$name" =~ ^(.*)-rec([0-9]+)$ ]]; then
        name="${BASH_REMATCH[1]}"; extra+=(--final-epochs "${BASH_REMATCH[2]}"); ep=1
      fi
      if [[ "$name" =~ ^(.*)-s([0-9]+)$ ]]; then
        name="${BASH_REMATCH[1]}"; n="${BASH_REMATCH[2]}"
        (( ep * 4 % n == 0 )) || { echo "prune_methods.sh: $row: $((ep * 4)) epochs do not split into $n steps" >&2; exit 2; }
        extra+=(--steps "$n"); ep=$((ep * 4 / n))
      fi
      if [[ "$name" == *-long ]]; then
        name="${name%-long}"
        if [ "$TASK" = sst2 ]; then lim=16000; ep=4; else ep=$((ep * 8)); fi
      fi
      # One-shot, iterative and layer rows resume an interrupted run from <out>.state; cubic rows
      # start over (their masks change inside the run; docs/cli.md).
      p=(prune --model "$src" --out "$out" --task "$TASK" --data "$DATA" --train-limit "$lim" --seed "$seed"
         --threads "$THREADS" --quiet --teacher "$d/teacher" --epochs "$ep" --save-every 100 --resume "${extra[@]}")
      R=recipes/prune
      # Structured rows: "% of encoder weights" converted to the unit's own share (attention is 1/3
      # of a BERT layer's linear weights, the FFN 2/3).
      case "$name" in
        movement-*|magnitude-*|taylor-*|l1-*|l2-*)
          "$CLI" "${p[@]}" --recipe "$R/${name%-*}-90.yaml" --sparsity "0.${name#*-}" ;;
        soft-movement-l*) "$CLI" "${p[@]}" --recipe $R/soft-movement.yaml --soft-lambda "${name#soft-movement-l}" ;;
        heads+neurons-lkd-*) "$CLI" "${p[@]}" --recipe $R/heads-ffn-50-layer-kd.yaml --sparsity "0.${name##*-}" ;;
        heads+neurons-*) "$CLI" "${p[@]}" --recipe $R/heads-ffn-50.yaml --sparsity "0.${name#*-}" ;;
        heads-30)   "$CLI" "${p[@]}" --recipe $R/heads-ffn-50.yaml --granularity heads --sparsity 0.9 ;;
        neurons-30) "$CLI" "${p[@]}" --recipe $R/heads-ffn-50.yaml --granularity neurons --sparsity 0.45 ;;
        entropy-neurons-30)
                    "$CLI" "${p[@]}" --recipe $R/heads-ffn-50.yaml --granularity neurons --sparsity 0.45 --criterion entropy ;;
        neurons-50) "$CLI" "${p[@]}" --recipe $R/heads-ffn-50.yaml --granularity neurons --sparsity 0.75 ;;
        nm-2-4)     "$CLI" "${p[@]}" --recipe $R/nm-2-4.yaml ;;
        depth-*-imp) "$CLI" "${p[@]}" --granularity layers --depth "${name//[!0-9]/}" --layer-select importance ;;
        depth-*)    "$CLI" "${p[@]}" --granularity layers --depth "${row#depth-}" --layer-select every-other ;;
        svd-r*|svd-e*|albert-e*|share-*|hash-*)
          f=(--model "$src" --out "$out" --task "$TASK" --data "$DATA" --train-limit "$LIMIT" --seed "$seed"
             --threads "$THREADS" --quiet --teacher "$d/teacher" --epochs "$EPOCHS")
          case "$row" in
            svd-r*)    "$CLI" factorize "${f[@]}" --rank "${row#svd-r}" ;;
            svd-e*)    "$CLI" factorize "${f[@]}" --energy "0.${row#svd-e}" ;;
            albert-e*) "$CLI" factorize "${f[@]}" --embedding-size "${row#albert-e}" ;;
            share-*-scratch)  # the shared blocks freshly initialised, then distilled (ALBERT's other way)
                       m="${row#share-}"; "$CLI" share "${f[@]}" --mode "${m%-scratch}" --from-scratch ;;
            share-*)   "$CLI" share "${f[@]}" --mode "${row#share-}" ;;
            hash-*)    "$CLI" share "${f[@]}" --hash-compression "${row#hash-}" ;;
          esac ;;
        *) echo "prune_methods.sh: unknown row '$row'" >&2; exit 2 ;;
      esac
      mkdir -p "$(dirname "$kept")"
      cp "$out/metrics.json" "$kept"
    done
  done
done
