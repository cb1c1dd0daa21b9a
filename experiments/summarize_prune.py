#!/usr/bin/env python3
"""Tables of experiments/prune_methods.sh: one row per pruning method and model.

Usage: python3 experiments/summarize_prune.py [RESULTS_DIR]   (default experiments/results)
Reads RESULTS_DIR/prune/<task>/seed<N>/<model>/<row>.json (pruned runs) and
RESULTS_DIR/methods/<task>/seed<N>/<model>.json (their unpruned models). Accuracies are
mean ± sample std over the seeds once all three exist; before that each seed's value is listed
("s1 83.60") so nothing is presented as an average of one run. Δ is pruned minus its own unpruned
model (same seed).
"""
import json, pathlib, sys

from summarize import one_class, seeds_cell  # one-answer MRPC models; mean ± sample std, or each seed's value

ROWS = [
    ("magnitude-50", "magnitude, 50 % unstructured (cubic)"),
    ("movement-50", "movement, 50 % unstructured (cubic)"),
    ("taylor-50", "Taylor (g·w)², 50 % unstructured (cubic)"),
    ("magnitude-70", "magnitude, 70 %"),
    ("movement-70", "movement, 70 %"),
    ("taylor-70", "Taylor, 70 %"),
    ("magnitude-90", "magnitude, 90 %"),
    ("movement-90", "movement, 90 %"),
    ("taylor-90", "Taylor, 90 %"),
    ("l1-90", "L1 shrinkage (proximal, λ = 2), then magnitude, 90 %"),
    ("l2-90", "L2 shrinkage (decay, λ = 20), then magnitude, 90 %"),
    ("magnitude-90-long", "magnitude, 90 %, 8x budget (16k sentences, 4 epochs)"),
    ("movement-90-long", "movement, 90 %, 8x budget (16k sentences, 4 epochs)"),
    ("soft-movement-l400", "soft movement, λ = 400 (sparsity is its result)"),
    ("soft-movement-l400-long", "soft movement, λ = 400, 8x budget (sparsity is its result)"),
    ("nm-2-4", "2:4 (magnitude, one shot)"),
    ("heads-30", "heads only, 30 % of encoder weights (90 % of attention)"),
    ("neurons-30", "FFN neurons only, 30 % of encoder weights"),
    ("entropy-neurons-30", "FFN neurons by activation entropy, 30 % of encoder weights"),
    ("neurons-50", "FFN neurons only, 50 % of encoder weights"),
    ("heads+neurons-30", "heads + FFN neurons, 30 % of encoder weights"),
    ("heads+neurons-50", "heads + FFN neurons, 50 % of encoder weights"),
    ("heads+neurons-lkd-50", "heads + FFN neurons, 50 %, with layer-wise (hidden-state) distillation"),
    ("heads+neurons-lkd-50-2x-bf16", "the same, 2x budget (8k sentences), bf16 autocast"),
    ("heads+neurons-lkd-50-rec4", "the same budget split 1 epoch per step + 4 at the final shape (recovery)"),
    ("heads+neurons-lkd-50-joint", "layer-wise KD, heads and neurons ranked jointly per weight"),
    ("depth-4", "4 layers kept (every other), no retraining"),
    ("depth-3", "3 layers kept (every other), no retraining"),
    ("depth-2", "2 layers kept (every other), no retraining"),
    ("depth-4-imp", "4 layers kept (most important), no retraining"),
    ("depth-3-imp", "3 layers kept (most important), no retraining"),
    ("depth-2-imp", "2 layers kept (most important), no retraining"),
    ("svd-r128", "SVD, rank 128, fine-tuned"),
    ("svd-r64", "SVD, rank 64, fine-tuned"),
    ("svd-e90", "SVD, 90 % energy per layer, fine-tuned"),
    ("albert-e128", "ALBERT factorized embeddings, E = 128, fine-tuned"),
    ("share-all", "ALBERT sharing, all layers (averaged), fine-tuned"),
    ("share-attention", "ALBERT sharing, attention only, fine-tuned"),
    ("share-all-scratch", "ALBERT sharing, all layers, from scratch, distilled"),
    ("share-ffn", "ALBERT sharing, FFN only, fine-tuned"),
    ("hash-8", "HashedNets, 8 weights per stored value, fine-tuned"),
]
MODELS = [("teacher", "teacher (6 × 384)"), ("teacher-ld", "teacher fine-tuned with LayerDrop 0.2"),
          ("pretrained", "pruned while fine-tuning from the pre-trained checkpoint (Δ against the fine-tuned teacher)"),
          ("kd-3", "3-layer student (Hinton KD)")]
METRIC = {"sst2": ("accuracy", "SST-2 acc"), "mrpc": ("f1", "MRPC F1")}


def load(path):
    return json.loads(path.read_text()) if path.exists() else None


def cell(values, signed=False, one_class=0):
    if not values:
        return "–"
    return seeds_cell(values, signed) + (f" ‡{one_class}" if one_class else "")


def main(results):
    results = pathlib.Path(results)
    commits = set()
    any_collapsed = False
    for model, label in MODELS:
        if not any((results / "prune" / t / f"seed{k}" / model).glob("*.json") for t in METRIC for k in (1, 2, 3)):
            continue  # no run of this model yet
        print(f"\n### {label}\n")
        print("| method | encoder weights removed | parameters | file MB | SST-2 acc | Δ SST-2 | MRPC F1 | Δ MRPC | saves |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for row, row_label in [("float", "unpruned")] + ROWS:
            cells, shape, sparsities = {}, None, []
            for task, (key, _) in METRIC.items():
                vals, deltas, collapsed = [], [], 0
                for seed in (1, 2, 3):
                    bm = "teacher" if model == "pretrained" else model
                    base = load(results / "methods" / task / f"seed{seed}" / f"{bm}.json") or \
                        load(results / "prune" / task / f"seed{seed}" / model / "unpruned.json")
                    run = base if row == "float" else load(results / "prune" / task / f"seed{seed}" / model / f"{row}.json")
                    if run is None or base is None:
                        continue
                    v = 100 * run["dev"][key]
                    vals.append((seed, v))
                    collapsed += task == "mrpc" and one_class(run["dev"])
                    deltas.append((seed, v - 100 * base["dev"][key]))
                    if row != "float":
                        commits.add(run.get("commit", "?"))
                        shape = shape or run
                        if "encoder_sparsity" in run:
                            sparsities.append(100 * run["encoder_sparsity"])
                cells[task] = (cell(vals, one_class=collapsed), "–" if row == "float" else cell(deltas, signed=True))
                any_collapsed = any_collapsed or collapsed > 0
            if row != "float" and shape is None:
                continue
            if shape and "encoder_sparsity" not in shape:  # factorize / share rows
                removed = "–"
                params = f"{shape['params_after'] / 1e6:.1f} M"
                mb = f"{shape['file_bytes'] / 1e6:.1f}"
                saves = "params, storage" + (", compute" if shape["command"] == "factorize" else "")
            elif shape:
                # Soft movement chooses its own sparsity, so seeds differ: show their range.
                lo, hi = min(sparsities), max(sparsities)
                removed = f"{lo:.1f} %" if hi - lo < 0.05 else f"{lo:.1f}–{hi:.1f} %"
                params = f"{shape['params_after'] / 1e6:.1f} M"
                mb = f"{shape['file_bytes'] / 1e6:.1f}"
                saves = "storage" if shape["format"] == "sparse-bitmap" else "params, storage, compute"
            else:
                removed, params, mb, saves = "0", "–", "–", "–"
            print(f"| {row_label} | {removed} | {params} | {mb} | {cells['sst2'][0]} | {cells['sst2'][1]} | "
                  f"{cells['mrpc'][0]} | {cells['mrpc'][1]} | {saves} |")
    if any_collapsed:
        print("\n‡N: on N of the seeds the model gave every MRPC dev pair the same answer (F1 81.22 when "
              "that answer is \"paraphrase\", the F1 of the majority class; 0 when it is \"no\").")
    print(f"\ncommits: {', '.join(sorted(commits)) or '–'}")
    bench = results / "prune" / "bench"
    TASK_NAMES = {"sst2": "SST-2", "mrpc": "MRPC"}
    if bench.exists():
        # Each model's rows were measured in one command; source.json says with which commit and
        # whose models (latency depends on the shapes, so any task's or seed's models serve).
        old_commit = (bench / "commit").read_text().strip() if (bench / "commit").exists() else "?"
        print("\n#### Latency (experiments/bench_prune.sh; p50 ms at sequence 128, 2 threads)\n")
        print("| model | row | parameters | p50 b1 | p50 b32 | speedup b1 | speedup b32 |")
        print("|---|---|---:|---:|---:|---:|---:|")
        sources = []
        for model, _ in MODELS:
            base = load(bench / model / "unpruned.json")
            if base is None:
                continue
            src = load(bench / model / "source.json") or {"commit": old_commit, "task": "sst2", "seed": 1}
            sources.append(f"{model}: commit {src['commit']}, the {TASK_NAMES.get(src['task'], src['task'])} seed-{src['seed']} models")
            ref = {r["batch"]: r["p50_ms"] for r in base}
            for f in sorted((bench / model).glob("*.json"), key=lambda f: (f.stem != "unpruned", f.stem)):
                if f.stem == "source":
                    continue
                rows = {r["batch"]: r["p50_ms"] for r in load(f)}
                m = load(results / "prune" / src["task"] / f"seed{src['seed']}" / model / f"{f.stem}.json")
                params = f"{m['params_after'] / 1e6:.1f} M" if m else "–"
                print(f"| {model} | {f.stem} | {params} | {rows[1]:.1f} | {rows[32]:.1f} | {ref[1] / rows[1]:.2f}x | "
                      f"{ref[32] / rows[32]:.2f}x |")
        print("\n" + "; ".join(sources) + ".")

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "experiments/results")
