#!/usr/bin/env python3
"""Turns the metrics.json files of experiments/foundation.sh into the docs/RESULTS.md tables.

Usage: python3 experiments/summarize.py OUT_DIR
Every accuracy is mean ± sample standard deviation (n-1) over the seeds found; retention is the
student's mean divided by the teacher's mean.
"""
import json, pathlib, statistics, sys

ROWS = [("teacher", "teacher: all-MiniLM-L6-v2 fine-tuned"),
        ("student-nokd", "3-layer student, no KD (labels only)"),
        ("student-kd", "3-layer student, Hinton KD (T=2, α=0.5)"),
        ("student-pkd", "3-layer student, PKD-skip (KD T=5 α=0.5 + normalised [CLS] of teacher layers 2, 4, β=100)")]
METRICS = {"sst2": [("accuracy", "SST-2 dev acc")], "mrpc": [("f1", "MRPC dev F1"), ("accuracy", "MRPC dev acc")]}


def ms(values):
    m = statistics.mean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return m, s


def seeds_cell(values, signed=False):
    """[(seed, value)] as a table cell: mean ± sample std over three or more seeds; with fewer, each
    seed's own value ("s1 80.91"), never a mean of one or two runs."""
    if len(values) < 3:
        return " ".join(f"s{s} {v:+.2f}" if signed else f"s{s} {v:.2f}" for s, v in values)
    m, sd = ms([v for _, v in values])
    return f"{m:+.2f} ± {sd:.2f}" if signed else f"{m:.2f} ± {sd:.2f}"


def one_class(dev):
    """Whether an MRPC model answered every dev pair alike. F1 hides it: answering "paraphrase" to
    all pairs gives precision = accuracy (the positive share, 68.4 %) and recall 1, so F1 =
    2a / (1 + a) = 81.22, four points below a fine-tuned teacher. F1 0 is counted too: no pair
    recognised as a paraphrase (in these runs always by answering "no" to all, accuracy 31.62 %)."""
    a, f = dev.get("accuracy"), dev.get("f1")
    return a is not None and f is not None and (f == 0 or abs(f - 2 * a / (1 + a)) < 1e-9)


def main(out):
    out = pathlib.Path(out)
    for task, metrics in METRICS.items():
        seeds = sorted(p for p in (out / task).glob("seed*") if p.is_dir())
        if not seeds:
            continue
        print(f"\n### {task.upper()}\n")
        head = "| model | layers | parameters | " + " | ".join(f"{n} (mean ± std)" for _, n in metrics) + \
               " | retention vs teacher | seeds |"
        print(head)
        print("|---|---:|---:|" + "---:|" * len(metrics) + "---:|---|")
        teacher_mean = None
        for key, label in ROWS:
            runs = [json.loads((s / key / "metrics.json").read_text()) for s in seeds if (s / key / "metrics.json").exists()]
            if not runs:
                continue
            cells = []
            for name, _ in metrics:
                m, s = ms([100 * r["dev"][name] for r in runs])
                cells.append(f"{m:.2f} ± {s:.2f}")
            main_m, _ = ms([100 * r["dev"][metrics[0][0]] for r in runs])
            if key == "teacher":
                teacher_mean = main_m
            ret = f"{100 * main_m / teacher_mean:.1f} %" if teacher_mean else "–"
            seeds_used = ",".join(str(r["train"]["seed"]) for r in runs)
            print(f"| {label} | {runs[0]['layers']} | {runs[0]['parameters'] / 1e6:.1f} M | " + " | ".join(cells) +
                  f" | {ret} | {seeds_used} |")
        # The bar "KD must not be worse than no KD", seed by seed (same seed = same teacher and batches).
        diffs = []
        for s in seeds:
            for kd_name in ("student-kd", "student-pkd"):
                kd, nokd = s / kd_name / "metrics.json", s / "student-nokd" / "metrics.json"
                if kd.exists() and nokd.exists():
                    a, b = (100 * json.loads(p.read_text())["dev"][metrics[0][0]] for p in (kd, nokd))
                    diffs.append(f"{s.name} {kd_name} {a - b:+.2f}")
        if diffs:
            print(f"\nKD − no KD ({metrics[0][1]}), per seed: {', '.join(diffs)}")
        commits = sorted({json.loads(p.read_text())["commit"] for p in (out / task).glob("seed*/*/metrics.json")})
        print(f"\ncommit(s): {', '.join(commits)}; train examples: "
              f"{json.loads(next((out / task).glob('seed*/teacher/metrics.json')).read_text())['train_examples']}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/foundation")
