#!/usr/bin/env bash
# docs/RESULTS.md, "Distillation methods side by side" (issue: every distillation method as a
# recipe). For each seed: the teacher fine-tuned on the task, then one student per row below, each
# in its own folder with metrics.json. Finished runs are skipped and interrupted ones resume from
# their training state, so an interrupted sweep continues where it stopped.
# Usage: bash experiments/distill_methods.sh OUT_DIR TASK [ROWS...]
#   TASK: mrpc (full training set) or sst2 (seeded subset of CONDENSE_SST2_LIMIT sentences, default 16000)
#   ROWS: a subset of the row names below (default: all)
# Env: CONDENSE_SEEDS (default "1 2 3"), CONDENSE_TEACHER_SEEDS (the multi-teacher rows' teachers,
#      default "1 2 3"), CONDENSE_THREADS (default 1), CONDENSE_NEED_ROWS (rows whose
#      model folders must exist, not only their kept results), CONDENSE_RESULTS (default experiments/results).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh"
cd "$ROOT"
OUT="${1:?usage: distill_methods.sh OUT_DIR TASK [ROWS...]}"
TASK="${2:?usage: distill_methods.sh OUT_DIR TASK [ROWS...]}"
shift 2
CLI="$BUILD/condense"
SEEDS="${CONDENSE_SEEDS:-1 2 3}"
THREADS="${CONDENSE_THREADS:-1}"
case "$TASK" in
  mrpc) DATA=data/glue/MRPC; LIMIT=0; T_EPOCHS=3; S_EPOCHS=3 ;;
  sst2) DATA=data/glue/SST-2; LIMIT="${CONDENSE_SST2_LIMIT:-16000}"; T_EPOCHS=2; S_EPOCHS=2 ;;
  *) echo "distill_methods.sh: TASK must be mrpc or sst2, not '$TASK'" >&2; exit 2 ;;
esac
ALL_ROWS="nokd-3 kd-3 kd-3-e3 distilbert-3 pkd-skip-3 pkd-last-3 nokd-4 kd-4 pkd-skip-4 pkd-last-4 nokd-4x312 tinybert-4x312 tinybert-3 kd-3-135 tinybert-3-135 kd-3-025 kd-3-aug kd-3-search multi-teacher-3-aug
  nokd-slice-4x312 kd-slice-4x312 kd-slice-4x312-13ep tinybert-slice-4x312 multi-teacher-3 self-distill-6 tinybert-6 norm-batchnorm-3 norm-nonorm-3 norm-weightnorm-3 norm-cosinenorm-3
  norm-batchnorm-fade-3 norm-nonorm-fade-3 norm-weightnorm-fade-3 norm-cosinenorm-fade-3
  bilstm-nokd bilstm-kd cnn-nokd cnn-kd nokd-mobilebert mobilebert tinybert-4x312-aug tinybert-4x312-aug-eq tinybert-gd-4x312 mobilebert-gd distilbert-gd-3
  vocab5k-nokd-3 vocab5k-kd-3 dualtrain-3x192 dualtrain-3x96 vocab5k-kd-3x192 vocab5k-kd-3x96 vocab5k-nokd-3x192 vocab5k-nokd-3x96 teacher-bf16 kd-3-bf16"
ROWS="${*:-$ALL_ROWS}"
mkdir -p "$OUT"

# Every finished run's metrics.json is also kept in the repository (experiments/results/methods/
# <task>/seed<N>/<row>.json), so that a sweep continues across machines: a row whose kept copy
# exists is not run again. Models other runs read (the teachers, the general stages gd-*) are rebuilt when their
# folder is missing; with one thread and a fixed seed they come out the same.
KEEP="${CONDENSE_RESULTS:-$ROOT/experiments/results}/methods"
need() {  # need OUT_FOLDER ARGS...: a model folder other runs use
  local out="$1"; shift
  [ -f "$out/metrics.json" ] && return 0
  echo "== $out" >&2
  "$CLI" "$@" --quiet --threads "$THREADS" --save-every 100 --resume --out "$out"
  keep "$out"
}
keep() {  # copy a finished run's metrics into the repository's results
  local rel="${1#$OUT/}"
  mkdir -p "$(dirname "$KEEP/$rel")"
  cp "$1/metrics.json" "$KEEP/$rel.json"
}
run() {  # run OUT_FOLDER ARGS...: skip when this row's result is kept or on disk, else run (resuming)
  local out="$1"
  # Rows whose models a later step reads (CONDENSE_NEED_ROWS, e.g. kd-3 for quantization) are built.
  if [[ " ${CONDENSE_NEED_ROWS:-} " == *" ${out##*/} "* ]]; then need "$@"; return; fi
  shift
  local rel="${out#$OUT/}"
  if [ -f "$out/metrics.json" ]; then keep "$out"; return 0; fi
  [ -f "$KEEP/$rel.json" ] && return 0
  echo "== $out" >&2
  "$CLI" "$@" --quiet --threads "$THREADS" --save-every 100 --resume --out "$out"
  keep "$out"
}

teacher() {  # teacher SEED: that seed's fine-tuned teacher (the students' and the multi-teacher rows')
  need "$OUT/$TASK/seed$1/teacher" finetune --model "$CONDENSE_TEACHER_DIR" --task "$TASK" --data "$DATA" \
    --train-limit "$LIMIT" --seed "$1" --epochs "$T_EPOCHS" --lr 5e-5
}

general() {  # general OUT_FOLDER RECIPE: a general stage from the pre-trained teacher on WikiText-2
  # (valid + test, ../shared/data/text) and the task's sentences, the start of a task stage
  local wiki="${CONDENSE_WIKITEXT:-$ROOT/../shared/data/text/wikitext-2}"
  need "$1" distill --teacher "$CONDENSE_TEACHER_DIR" --recipe "$2" --task "$TASK" --data "$DATA" --seed "$seed" \
    --corpus "$wiki/valid.txt,$wiki/test.txt,task"
}

for seed in $SEEDS; do
  d="$OUT/$TASK/seed$seed"
  common=(--task "$TASK" --data "$DATA" --train-limit "$LIMIT" --seed "$seed")
  teacher "$seed"
  T="$d/teacher"
  for row in $ROWS; do
    s=(distill --teacher "$T" "${common[@]}")
    case "$row" in
      nokd-3)        run "$d/$row" "${s[@]}" --recipe recipes/distil-3layer.yaml --epochs "$S_EPOCHS" --alpha 0 ;;
      kd-3)          run "$d/$row" "${s[@]}" --recipe recipes/distil-3layer.yaml --epochs "$S_EPOCHS" ;;
      # The recipe as written (3 epochs) on both tasks: on MRPC the same run as kd-3, on SST-2 one
      # epoch more than the sweep's 2 (which every other SST-2 row keeps).
      kd-3-e3)       run "$d/$row" "${s[@]}" --recipe recipes/distil-3layer.yaml --epochs 3 ;;
      # kd-3 over TinyBERT's augmented transfer set (Jiao et al. 2020: 4 variants per example, words
      # replaced by teacher-embedding neighbours; the teacher labels them once, cached): the same
      # epochs over 5x the examples.
      kd-3-aug)      run "$d/$row" "${s[@]}" --recipe recipes/distil-3layer.yaml --epochs "$S_EPOCHS" --augment 4 ;;
      # kd-3 with its start (teacher layers 0, 2, 4 or 1, 3, 5) chosen on 10 % of the training set
      # held out from two trial runs, then distilled on all of it.
      kd-3-search)   run "$d/$row" "${s[@]}" --recipe recipes/distil-3layer-search.yaml --epochs "$S_EPOCHS" ;;
      # Mixed-precision training (bf16 autocast) against the fp32 rows teacher and kd-3: same
      # commands plus --bf16 (kd-3-bf16 distils from the fp32 teacher, like kd-3).
      teacher-bf16)  run "$d/$row" finetune --model "$CONDENSE_TEACHER_DIR" "${common[@]}" --epochs "$T_EPOCHS" \
                       --lr 5e-5 --bf16 ;;
      kd-3-bf16)     run "$d/$row" "${s[@]}" --recipe recipes/distil-3layer.yaml --epochs "$S_EPOCHS" --bf16 ;;
      distilbert-3)  run "$d/$row" "${s[@]}" --recipe recipes/distilbert-3layer.yaml --epochs "$S_EPOCHS" ;;
      pkd-skip-3)    run "$d/$row" "${s[@]}" --recipe recipes/pkd-skip-3layer.yaml --epochs "$S_EPOCHS" ;;
      pkd-last-3)    run "$d/$row" "${s[@]}" --recipe recipes/pkd-last-3layer.yaml --epochs "$S_EPOCHS" ;;
      nokd-4)        run "$d/$row" "${s[@]}" --recipe recipes/distil-3layer.yaml --layers 4 --init-layers 0,2,3,5 \
                       --epochs "$S_EPOCHS" --alpha 0 ;;
      kd-4)          run "$d/$row" "${s[@]}" --recipe recipes/distil-3layer.yaml --layers 4 --init-layers 0,2,3,5 \
                       --epochs "$S_EPOCHS" ;;
      pkd-skip-4)    run "$d/$row" "${s[@]}" --recipe recipes/pkd-skip-4layer.yaml --epochs "$S_EPOCHS" ;;
      pkd-last-4)    run "$d/$row" "${s[@]}" --recipe recipes/pkd-last-4layer.yaml --epochs "$S_EPOCHS" ;;
      nokd-4x312)    run "$d/$row" "${s[@]}" --layers 4 --hidden 312 --heads 12 --intermediate 1200 --init scratch \
                       --epochs 13 --lr 1e-4 --alpha 0 ;;  # as many epochs as TinyBERT's two stages together
      tinybert-4x312) run "$d/$row" "${s[@]}" --recipe recipes/tinybert-4x312.yaml ;;
      # TinyBERT's two stages on the 3 x 384 student of kd-3 (same start, teacher layers 0, 2, 4).
      tinybert-3)    run "$d/$row" "${s[@]}" --recipe recipes/tinybert-3x384.yaml ;;
      # The same two 3 x 384 recipes started from teacher layers 1, 3, 5: each student layer the
      # teacher layer whose output the uniform map compares it with, the last one the layer the
      # classifier was fine-tuned on.
      kd-3-135)      run "$d/$row" "${s[@]}" --recipe recipes/distil-3layer.yaml --epochs "$S_EPOCHS" --init-layers 1,3,5 ;;
      tinybert-3-135) run "$d/$row" "${s[@]}" --recipe recipes/tinybert-3x384.yaml --init-layers 1,3,5 ;;
      # Between the two: the first two layers of kd-3 (0, 2) and the teacher's last layer (5).
      kd-3-025)      run "$d/$row" "${s[@]}" --recipe recipes/distil-3layer.yaml --epochs "$S_EPOCHS" --init-layers 0,2,5 ;;
      # The same 4 x 312 shape inherited from the teacher (init teacher-slice: teacher layers
      # 0, 2, 3, 5 narrowed to their most important channels, heads' dimensions and neurons).
      tinybert-slice-4x312) run "$d/$row" "${s[@]}" --recipe recipes/tinybert-4x312.yaml --init teacher-slice \
                       --init-layers 0,2,3,5 ;;
      nokd-slice-4x312 | kd-slice-4x312 | kd-slice-4x312-13ep)  # 13ep: TinyBERT's 10 + 3 epochs
        alpha=(); [ "$row" = nokd-slice-4x312 ] && alpha=(--alpha 0)
        epochs="$S_EPOCHS"; [ "$row" = kd-slice-4x312-13ep ] && epochs=13
        run "$d/$row" "${s[@]}" --recipe recipes/distil-3layer.yaml --layers 4 --hidden 312 --heads 12 \
          --intermediate 1200 --init teacher-slice --init-layers 0,2,3,5 --epochs "$epochs" "${alpha[@]}" ;;
      # The teachers of seeds 1, 2 and 3 (CONDENSE_TEACHER_SEEDS), equal weights, whichever seeds
      # this invocation runs; -aug: over kd-3-aug's augmented transfer set, labelled by all of them.
      multi-teacher-3 | multi-teacher-3-aug)
        extra=""; aug=(); [ "$row" = multi-teacher-3-aug ] && aug=(--augment 4)
        for o in ${CONDENSE_TEACHER_SEEDS:-1 2 3}; do
          teacher "$o"
          [ "$o" != "$seed" ] && extra="${extra:+$extra,}$OUT/$TASK/seed$o/teacher"
        done
        run "$d/$row" "${s[@]}" --recipe recipes/distil-3layer.yaml --epochs "$S_EPOCHS" --extra-teachers "$extra" \
          "${aug[@]}" ;;
      self-distill-6) run "$d/$row" "${s[@]}" --recipe recipes/self-distill-6layer.yaml --init "$CONDENSE_TEACHER_DIR" \
                       --epochs "$S_EPOCHS" ;;
      # TinyBERT's two task stages on the teacher's own shape, from the pre-trained checkpoint.
      tinybert-6)    run "$d/$row" "${s[@]}" --recipe recipes/tinybert-6x384.yaml --init "$CONDENSE_TEACHER_DIR" ;;
      # The same students with the teacher's LayerNorm handed over to the kind gradually, during
      # the first half of the steps (--norm-fade), instead of swapped at the first step.
      norm-*-fade-3) n="${row#norm-}"; n="${n%-fade-3}"
                     run "$d/$row" "${s[@]}" --recipe recipes/distil-3layer.yaml --epochs "$S_EPOCHS" --norm "$n" \
                       --norm-fade 0.5 ;;
      norm-*-3)      n="${row#norm-}"; n="${n%-3}"
                     run "$d/$row" "${s[@]}" --recipe recipes/distil-3layer.yaml --epochs "$S_EPOCHS" --norm "$n" ;;
      # MobileBERT-style bottleneck student: progressive transfer then prediction KD (recipe), and
      # the same shape fine-tuned on labels for as many epochs as the recipe's prediction stage.
      mobilebert)    run "$d/$row" "${s[@]}" --recipe recipes/mobilebert-6x384-b96.yaml ;;
      nokd-mobilebert) run "$d/$row" "${s[@]}" --layers 6 --bottleneck 96 --num-ffn 4 --intermediate 384 \
                       --heads 12 --hidden-act relu --epochs "$S_EPOCHS" --lr 1e-4 --alpha 0 ;;
      # TinyBERT with its data augmentation (4 variants per example; the teacher runs on every batch
      # of the intermediate stage, so this row costs about 5x the plain one).
      tinybert-4x312-aug) run "$d/$row" "${s[@]}" --recipe recipes/tinybert-4x312.yaml --augment 4 ;;
      # The same augmentation at the plain row's compute (2 + 1 epochs over the 5x transfer set).
      tinybert-4x312-aug-eq) run "$d/$row" "${s[@]}" --recipe recipes/tinybert-4x312-aug.yaml ;;
      # A student with its own 5,000-piece vocabulary learned from the training text (embedding rows
      # mapped from the teacher's pieces), with and without KD (DualTrain's smaller-vocabulary student
      # without its dual training or shared projections).
      vocab5k-nokd-3) run "$d/$row" "${s[@]}" --recipe recipes/distil-3layer.yaml --student-vocab 5000 \
                       --epochs "$S_EPOCHS" --alpha 0 ;;
      vocab5k-kd-3)  run "$d/$row" "${s[@]}" --recipe recipes/distil-3layer.yaml --student-vocab 5000 \
                       --epochs "$S_EPOCHS" ;;
      # DualTrain + SharedProjUp (Zhao et al. 2021) at two widths, and the same narrow students with
      # the same vocabulary, epochs and learning rate trained by prediction KD alone.
      dualtrain-3x192|dualtrain-3x96)
                     run "$d/$row" "${s[@]}" --recipe "recipes/$row.yaml" --student-vocab 5000 ;;
      # -nokd-: the same students on the labels alone (alpha 0), each narrow shape's no-KD baseline.
      vocab5k-kd-3x192|vocab5k-kd-3x96|vocab5k-nokd-3x192|vocab5k-nokd-3x96)
                     h="${row##*-3x}"; alpha=(); [[ "$row" == vocab5k-nokd-* ]] && alpha=(--alpha 0)
                     run "$d/$row" "${s[@]}" --recipe recipes/distil-3layer.yaml --student-vocab 5000 --hidden "$h" \
                       --heads $((h / 32)) --intermediate $((h * 4)) --init scratch --epochs 6 --lr 2e-4 "${alpha[@]}" ;;
      # TinyBERT's two stages: general distillation from the pre-trained model on WikiText-2
      # (valid + test, from ../shared/data/text) and the task's sentences, then task distillation.
      tinybert-gd-4x312)
        general "$d/gd-4x312" recipes/tinybert-4x312-general.yaml
        run "$d/$row" "${s[@]}" --recipe recipes/tinybert-4x312.yaml --init "$d/gd-4x312" ;;
      # DistilBERT's two stages (Sanh et al. 2019): masked-LM and cosine hidden-state loss on the same
      # general text from the pre-trained model (teacher layers 0, 2, 4), then the distilbert-3 row's
      # task distillation from that student.
      distilbert-gd-3)
        general "$d/gd-distilbert-3" recipes/distilbert-3layer-general.yaml
        run "$d/$row" "${s[@]}" --recipe recipes/distilbert-3layer.yaml --init "$d/gd-distilbert-3" --epochs "$S_EPOCHS" ;;
      # The MobileBERT-style student with its progressive transfer first run on the same general
      # text from the pre-trained teacher, then the task recipe (progressive transfer + KD) from it.
      mobilebert-gd)
        general "$d/gd-mobilebert" recipes/mobilebert-6x384-b96-general.yaml
        run "$d/$row" "${s[@]}" --recipe recipes/mobilebert-6x384-b96.yaml --init "$d/gd-mobilebert" ;;
      # Cross-architecture students (Tang et al. 2019). Without KD: the original training set and its
      # labels; with KD: the recipe's augmented transfer set labelled by the teacher (logit MSE).
      bilstm-nokd)   run "$d/$row" "${s[@]}" --recipe recipes/bilstm-tang.yaml --alpha 0 --augment 0 ;;
      bilstm-kd)     run "$d/$row" "${s[@]}" --recipe recipes/bilstm-tang.yaml ;;
      cnn-nokd)      run "$d/$row" "${s[@]}" --recipe recipes/textcnn-tang.yaml --alpha 0 --augment 0 ;;
      cnn-kd)        run "$d/$row" "${s[@]}" --recipe recipes/textcnn-tang.yaml ;;
      *) echo "distill_methods.sh: unknown row '$row'" >&2; exit 2 ;;
    esac
  done
done
