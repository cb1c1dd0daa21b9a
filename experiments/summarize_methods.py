#!/usr/bin/env python3
"""Tables of experiments/distill_methods.sh: one row per method, mean ± sample std over the seeds found.

Usage: python3 experiments/summarize_methods.py [RESULTS_DIR]   (default experiments/results/methods)
Reads the runs' metrics kept in the repository by experiments/distill_methods.sh
(RESULTS_DIR/<task>/seed<N>/<row>.json). Compression is the teacher's parameter count over the student's. A row appears once any seed has
finished on either task; its seeds column says which, per task, and its accuracy is a mean once three seeds are in. Speedups (teacher latency / row latency, p50, seq 128) come
from RESULTS_DIR/bench/ROW.json written by experiments/bench_methods.sh, when present: one file per
model shape (shape_key), which every row of that shape shows.
Usage (for experiments/bench_methods.sh): summarize_methods.py --shape-key METRICS_JSON
"""
import json, pathlib, sys

from summarize import ms, one_class, seeds_cell  # one-answer MRPC models; mean ± sample std, or each seed's value

ROWS = [
    ("teacher", "teacher: all-MiniLM-L6-v2 fine-tuned"),
    ("nokd-3", "no KD (labels only)"), ("kd-3", "Hinton KD (T=2, α=0.5)"),
    ("kd-3-e3", "Hinton KD, 3 epochs on SST-2 too (on MRPC the row above)"),
    ("distilbert-3", "DistilBERT (KD + cosine on last hidden)"),
    ("pkd-skip-3", "PKD-skip"), ("pkd-last-3", "PKD-last"),
    ("nokd-4", "no KD (labels only)"), ("kd-4", "Hinton KD (T=2, α=0.5)"),
    ("pkd-skip-4", "PKD-skip"), ("pkd-last-4", "PKD-last"),
    ("tinybert-3", "TinyBERT task distillation (teacher layers 0, 2, 4)"),
    ("kd-3-135", "Hinton KD, from teacher layers 1, 3, 5"),
    ("kd-3-025", "Hinton KD, from teacher layers 0, 2, 5"),
    ("kd-3-search", "Hinton KD, start (teacher layers 0, 2, 4 or 1, 3, 5) chosen on held-out training examples"),
    ("kd-3-aug", "Hinton KD over TinyBERT's augmented transfer set (4 variants per example)"),
    ("tinybert-3-135", "TinyBERT task distillation, from teacher layers 1, 3, 5"),
    ("nokd-4x312", "no KD, from scratch"), ("tinybert-4x312", "TinyBERT task distillation, no GD"),
    ("nokd-slice-4x312", "no KD, inherited from the teacher (teacher-slice)"),
    ("kd-slice-4x312", "Hinton KD, inherited from the teacher (teacher-slice)"),
    ("kd-slice-4x312-13ep", "Hinton KD, inherited from the teacher, 13 epochs (as TinyBERT's two stages)"),
    ("tinybert-slice-4x312", "TinyBERT task distillation, inherited from the teacher (teacher-slice)"),
    ("multi-teacher-3", "multi-teacher KD (3 teachers, equal weights)"),
    ("multi-teacher-3-aug", "multi-teacher KD over the augmented transfer set (3 teachers, 4 variants per example)"),
    ("self-distill-6", "self-distillation (born-again, from the pre-trained model)"),
    ("tinybert-6", "TinyBERT task distillation, the teacher's shape (from the pre-trained model)"),
    ("norm-batchnorm-3", "Hinton KD, BatchNorm"), ("norm-nonorm-3", "Hinton KD, NoNorm"),
    ("norm-weightnorm-3", "Hinton KD, WeightNorm + NoNorm"), ("norm-cosinenorm-3", "Hinton KD, CosineNorm + NoNorm"),
    ("norm-batchnorm-fade-3", "Hinton KD, BatchNorm, LayerNorm handed over during the first half"),
    ("norm-nonorm-fade-3", "Hinton KD, NoNorm, LayerNorm handed over during the first half"),
    ("norm-weightnorm-fade-3", "Hinton KD, WeightNorm + NoNorm, LayerNorm handed over during the first half"),
    ("norm-cosinenorm-fade-3", "Hinton KD, CosineNorm + NoNorm, LayerNorm handed over during the first half"),
    ("tinybert-4x312-aug", "TinyBERT task distillation + augmentation, no GD"),
    ("tinybert-4x312-aug-eq", "TinyBERT task distillation + augmentation at the plain row's compute (2 + 1 epochs), no GD"),
    ("tinybert-gd-4x312", "TinyBERT general (WikiText-2 + task text) then task distillation"),
    ("nokd-mobilebert", "MobileBERT-style bottleneck, no KD"),
    ("mobilebert", "MobileBERT-style: progressive transfer + KD"),
    ("mobilebert-gd", "MobileBERT-style: progressive transfer on general text, then on the task + KD"),
    ("distilbert-gd-3", "DistilBERT general (masked LM + cosine on WikiText-2 + task text) then task distillation"),
    ("vocab5k-nokd-3", "own 5k vocabulary, no KD"), ("vocab5k-kd-3", "own 5k vocabulary, Hinton KD"),
    ("vocab5k-nokd-3x192", "own 5k vocabulary, narrow, no KD (labels only)"),
    ("vocab5k-kd-3x192", "own 5k vocabulary, narrow, Hinton KD only"),
    ("dualtrain-3x192", "DualTrain + SharedProjUp, own 5k vocabulary"),
    ("vocab5k-nokd-3x96", "own 5k vocabulary, narrow, no KD (labels only)"),
    ("vocab5k-kd-3x96", "own 5k vocabulary, narrow, Hinton KD only"),
    ("dualtrain-3x96", "DualTrain + SharedProjUp, own 5k vocabulary"),
    ("bilstm-nokd", "BiLSTM, no KD (labels only)"), ("bilstm-kd", "BiLSTM, Tang et al. KD (MSE, augmented)"),
    ("cnn-nokd", "TextCNN, no KD (labels only)"), ("cnn-kd", "TextCNN, KD (MSE, augmented)"),
]
METRICS = {"sst2": [("accuracy", "SST-2 acc")], "mrpc": [("f1", "MRPC F1"), ("accuracy", "MRPC acc")]}


def shape(r):
    arch = r.get("arch", "bert")
    if arch == "bilstm":
        return f"BiLSTM 2 × {r['hidden_size']}"
    if arch == "cnn":
        return f"CNN 3 × {r['hidden_size']}"
    s = f"{r['layers']} × {r['hidden_size']}"
    return s + (f" (bottleneck {r['bottleneck_size']})" if r.get("bottleneck_size") else "")


def shape_key(r):
    """What latency depends on: the architecture and its sizes, never the method, seed or task. The
    parameter count separates shapes the other fields share (FFN width, WeightNorm's gains); the
    fine-tuned teacher records no norm, and it is LayerNorm."""
    return "/".join(str(v) for v in (r.get("arch", "bert"), r.get("layers"), r.get("hidden_size"),
                                     r.get("bottleneck_size"), r.get("norm") or "layernorm",
                                     r.get("student_vocab_size"), r["parameters"]))


def latencies(out, tasks):
    """shape key -> (runtime, {batch: p50 ms}) from the bench files (one per shape, named after the
    row whose model was timed), and runtime -> the teacher's {batch: p50 ms}. Shapes the inference
    runtime cannot run were timed in eager LibTorch, and so was the teacher once more
    ("teacher.torch")."""
    metrics = {(t, row): runs[0][1] for t, rows in tasks.items() for row, runs in rows.items()}
    by_shape, teacher = {}, {}
    for f in sorted((out / "bench").glob("*.json")):
        runs = json.loads(f.read_text())
        rt, p50 = runs[0].get("runtime", "engine"), {b["batch"]: b["p50_ms"] for b in runs}
        row = f.stem.split(".")[0]
        if row == "teacher":
            teacher[rt] = p50
        if f.stem != row:
            continue
        # The shape is that of the model timed (OUT/<task>/seed<N>/<row>/): a row's shape can differ
        # between tasks (the BiLSTM and TextCNN join a pair's two encodings in a wider head).
        task = pathlib.Path(runs[0]["model"]).parts[-3]
        if r := metrics.get((task, row)):
            by_shape[shape_key(r)] = (rt, p50)
    return by_shape, teacher


def load(out, task):
    """row -> [(seed, metrics)] for one task, seeds in order."""
    runs = {}
    for sd in sorted(p for p in (out / task).glob("seed*") if p.is_dir()):
        for f in sd.glob("*.json"):
            r = json.loads(f.read_text())
            runs.setdefault(f.stem, []).append((r["train"]["seed"], r))
    return {k: sorted(v, key=lambda x: x[0]) for k, v in runs.items()}


def score_cell(runs, teacher, name, retention):
    """Mean ± std (or each seed's value) of dev metric `name` in %, with the share of the same seed's
    teacher kept ("97.8 %": mean over the seeds of student / teacher) when `retention` is set."""
    if not runs:
        return "–"
    values = [(seed, 100 * r["dev"][name]) for seed, r in runs]
    cell = seeds_cell(values)
    collapsed = sum(one_class(r["dev"]) for _, r in runs) if name == "f1" else 0
    kept = [(seed, v / (100 * teacher[seed]["dev"][name])) for seed, v in values if seed in teacher]
    if retention and kept and len(kept) == len(values):
        if len(kept) >= 3:
            cell += f" ({100 * ms([k for _, k in kept])[0]:.1f} %)"
        else:
            cell += " (" + " ".join(f"s{seed} {100 * k:.1f} %" for seed, k in kept) + ")"
    return cell + (f" ‡{collapsed}" if collapsed else "")


def main(out):
    """One table over both tasks, in the form of the survey's MRPC table: every row with the seeds
    it has on each task."""
    out = pathlib.Path(out)
    tasks = {t: load(out, t) for t in METRICS}
    lat, teacher_lat = latencies(out, tasks)
    if teacher_lat:
        commit = (out / "bench" / "commit").read_text().strip() if (out / "bench" / "commit").exists() else "?"
        print(f"speedups: `bash experiments/bench_methods.sh OUT` at commit {commit}, p50 at seq 128, "
              f"batch 1 and 32, teacher latency / model latency, one measurement per model shape")
    teachers = {t: dict(runs.get("teacher", [])) for t, runs in tasks.items()}
    # (task, metric, label, whether its cell shows the share of the teacher kept: the task's first metric)
    cols = [(t, name, label, i == 0) for t, metrics in METRICS.items() for i, (name, label) in enumerate(metrics)]
    print("\n| method | layers × hidden | parameters | compression | speedup b1 | speedup b32 | " +
          " | ".join(label for _, _, label, _ in cols) + " | seeds (SST-2 / MRPC) |")
    print("|---|---|---:|---:|---:|---:|" + "---:|" * len(cols) + "---|")
    commits = set()
    for key, label in ROWS:
        per_task = {t: runs.get(key, []) for t, runs in tasks.items()}
        found = [(t, r) for t, rs in per_task.items() for _, r in rs]
        if not found:
            continue
        commits.update(r["commit"] for _, r in found)
        params, comp = [], []
        for t, rs in per_task.items():
            if not rs:
                continue
            n = rs[0][1]["parameters"]
            tp = next(iter(teachers[t].values()))["parameters"] if teachers[t] else None
            if f"{n / 1e6:.1f} M" not in params:
                params.append(f"{n / 1e6:.1f} M")
                comp.append(f"{tp / n:.2f}x" if tp else "–")
        speed = []
        rt, p50 = lat.get(shape_key(found[0][1]), ("engine", {}))
        for b in (1, 32):
            t, m = teacher_lat.get(rt, {}).get(b), p50.get(b)
            speed.append(f"{t / m:.2f}x" + ("†" if rt != "engine" else "") if t and m else "–")
        cells = [score_cell(per_task[t], teachers[t], name, retention=first and key != "teacher")
                 for t, name, _, first in cols]
        seeds_used = " / ".join(",".join(str(s) for s, _ in per_task[t]) or "–" for t in METRICS)
        print(f"| {label} | {shape(found[0][1])} | {' / '.join(params)} | {' / '.join(comp)} | {speed[0]} | "
              f"{speed[1]} | " + " | ".join(cells) + f" | {seeds_used} |")
    print(f"\nIn parentheses: the share of the same seed's teacher kept (SST-2 accuracy, MRPC F1), averaged over "
          f"the seeds. †: timed in eager LibTorch, against the teacher timed there, because the inference runtime does not run this shape. Two values of parameters or compression: SST-2 / MRPC, where they differ (the BiLSTM and TextCNN encode a pair's two sentences one after the other and join them in a wider head; their speedups are the single-sentence model's). ‡N: on N of the "
          f"seeds the model gave every MRPC dev pair the same answer (F1 81.22 when that answer is \"paraphrase\", "
          f"the F1 of the majority class; 0 when it is \"no\").\n")
    print(f"commit(s): {', '.join(sorted(commits))}")
    precision_table(out)


def precision_table(out):
    """fp32 against bf16-autocast training (rows teacher/teacher-bf16, kd-3/kd-3-bf16), seed by seed."""
    pairs = [("teacher", "teacher-bf16", "teacher fine-tuned"), ("kd-3", "kd-3-bf16", "3 × 384 Hinton KD student")]
    for task, metrics in METRICS.items():
        name, label = metrics[0]
        seeds = sorted(p for p in (out / task).glob("seed*") if p.is_dir())
        rows = []
        for fp32, bf16, what in pairs:
            both = [(json.loads((s / f"{fp32}.json").read_text()), json.loads((s / f"{bf16}.json").read_text()))
                    for s in seeds if (s / f"{fp32}.json").exists() and (s / f"{bf16}.json").exists()]
            if both:
                rows.append((what, both))
        if not rows:
            continue
        print(f"\n#### {task.upper()}: bf16 autocast training against fp32 ({label})\n")
        print(f"| model | fp32 | bf16 autocast | bf16 − fp32 | seeds |")
        print("|---|---:|---:|---:|---|")
        for what, both in rows:
            a = [100 * f["dev"][name] for f, _ in both]
            b = [100 * g["dev"][name] for _, g in both]
            d = [y - x for x, y in zip(a, b)]
            seeds_used = ",".join(str(f["train"]["seed"]) for f, _ in both)
            if len(both) >= 3:
                cells = [f"{ms(a)[0]:.2f} ± {ms(a)[1]:.2f}", f"{ms(b)[0]:.2f} ± {ms(b)[1]:.2f}",
                         f"{ms(d)[0]:+.2f} ± {ms(d)[1]:.2f}"]
            else:  # fewer than three seeds: per seed, never as a mean
                per = lambda v, fmt: " ".join(f"s{f['train']['seed']} {x:{fmt}}" for (f, _), x in zip(both, v))
                cells = [per(a, ".2f"), per(b, ".2f"), per(d, "+.2f")]
            print(f"| {what} | " + " | ".join(cells) + f" | {seeds_used} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--shape-key"]:
        print(shape_key(json.loads(pathlib.Path(sys.argv[2]).read_text())))
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "experiments/results/methods")
