#!/usr/bin/env python3
"""Tables of experiments/quantize_methods.sh: one row per quantization method and model.

Usage: python3 experiments/summarize_quantize.py [RESULTS_DIR]   (default experiments/results)
Reads RESULTS_DIR/quantize/<task>/seed<N>/<model>/<row>.json (quantized runs),
RESULTS_DIR/methods/<task>/seed<N>/<model>.json (their float models) and, when present,
RESULTS_DIR/quantize/bench/<model>/<row>.json (latency, experiments/bench_quantize.sh).
Accuracies are mean ± sample std over the seeds; Δ is the quantized model minus its own float
model (same seed), mean ± std; a cell with fewer than three seeds says so.
"""
import json, pathlib, sys

from summarize import ms  # mean ± sample std, as in the foundation tables

ROWS = [
    ("fp32", "fp32 (float model)", "32/32", "–"),
    ("fp16", "fp16 weights", "16/32", "–"),
    ("bf16", "bf16 weights and activations", "16/16", "–"),
    ("int8-dynamic", "int8 dynamic", "8/8", "per-channel"),
    ("int8-static-minmax", "int8 static, min/max observer", "8/8", "per-channel"),
    ("int8-static-ema", "int8 static, moving-average observer", "8/8", "per-channel"),
    ("int8-static-percentile", "int8 static, 99.99th percentile observer", "8/8", "per-channel"),
    ("int8-static-mse", "int8 static, MSE observer", "8/8", "per-channel"),
    ("int8-static-entropy", "int8 static, entropy (KL) observer", "8/8", "per-channel"),
    ("int8-static-tensor", "int8 static, min/max, per-tensor weights", "8/8", "per-tensor"),
    ("int8-qat", "int8 QAT (1 epoch, teacher KD)", "8/8", "per-channel"),
    ("w4a8", "W4A8: 4-bit symmetric weights (MSE ranges), int8 activations, int8 GEMM", "4/8", "per-channel"),
    ("int4-group", "4-bit group-wise PTQ", "4/32", "group 128"),
    ("int4-group-qat", "4-bit group-wise QAT (1 epoch, teacher KD)", "4/32", "group 128"),
    ("int2-mixed-qat", "2-bit group-wise, MSE ranges, Hessian mixed 2/4 bit, QAT (3 epochs)", "2-4/32", "group 128"),
    ("binary-qat", "binary (sign × mean), QAT (3 epochs)", "1/32", "per-channel"),
    ("log4", "4-bit logarithmic", "4/32", "per-channel"),
    ("kmeans16", "k-means, 16 centroids", "4/32", "per-channel"),
    ("kmeans256", "k-means, 256 centroids", "8/32", "per-tensor"),
]
MODELS = [("teacher", "teacher (6 × 384)"), ("kd-3", "3-layer student (Hinton KD)")]
METRIC = {"sst2": ("accuracy", "SST-2 acc"), "mrpc": ("f1", "MRPC F1")}


def load(path):
    return json.loads(path.read_text()) if path.exists() else None


def cell(values, signed=False):
    if not values:
        return "–"
    m, sd = ms(values)
    if len(values) < 3:
        return f"pending ({len(values)} of 3)"
    return f"{m:+.2f} ± {sd:.2f}" if signed else f"{m:.2f} ± {sd:.2f}"


def main(results):
    results = pathlib.Path(results)
    commits = set()
    for model, model_label in MODELS:
        print(f"\n### {model_label}\n")
        print("| method | bits W/A | granularity | SST-2 acc | Δ SST-2 | MRPC F1 | Δ MRPC | file bytes | file vs fp32 | "
              "encoder weights vs fp32 | p50 b1 (ms) | p50 b32 (ms) | speedup b1 | speedup b32 |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        bench = {}
        for f in (results / "quantize" / "bench" / model).glob("*.json"):
            bench[f.stem] = {b["batch"]: b["p50_ms"] for b in json.loads(f.read_text())}
        for key, label, bits, gran in ROWS:
            accs, deltas, sizes, enc, fp32_bytes = {}, {}, [], [], []
            for task, (metric, _) in METRIC.items():
                accs[task], deltas[task] = [], []
                for seed_dir in sorted((results / "quantize" / task).glob("seed*")):
                    flt = load(results / "methods" / task / seed_dir.name / f"{model}.json")
                    run = flt if key == "fp32" else load(seed_dir / model / f"{key}.json")
                    if run is None:
                        continue
                    commits.add(run["commit"])
                    accs[task].append(100 * run["dev"][metric])
                    # Paired with the float model of the same seed: the cost of quantizing it.
                    if key != "fp32":
                        deltas[task].append(100 * (run["dev"][metric] - flt["dev"][metric]))
                    if key != "fp32":
                        sizes.append(run["file_bytes"])
                        fp32_bytes.append(run["source_file_bytes"])
                        enc.append(run["encoder_compression"])
            if not any(accs.values()):
                continue
            size = f"{sizes[0] / 1e6:.1f} MB" if sizes else "(float)"
            ratio = f"{fp32_bytes[0] / sizes[0]:.2f}x" if sizes else "1.00x"
            encr = f"{enc[0]:.2f}x" if enc else "1.00x"
            lat = bench.get(key, {})
            base = bench.get("fp32", {})
            p = [f"{lat[b]:.1f}" if b in lat else "–" for b in (1, 32)]
            s = [f"{base[b] / lat[b]:.2f}x" if b in lat and b in base else "–" for b in (1, 32)]
            print(f"| {label} | {bits} | {gran} | {cell(accs['sst2'])} | {cell(deltas['sst2'], True)} | "
                  f"{cell(accs['mrpc'])} | {cell(deltas['mrpc'], True)} | {size} | {ratio} | "
                  f"{encr} | {p[0]} | {p[1]} | {s[0]} | {s[1]} |")
    print(f"\ncommit(s): {', '.join(sorted(commits))}")
    runtime_table(results)


RUNTIME_ROWS = [("fp32", "fp32"), ("bf16", "bf16 weights and activations"), ("int8-dynamic", "int8 dynamic"),
                ("int8-static-minmax", "int8 static (min/max)"), ("w4a8", "W4A8")]


def runtime_table(results):
    """experiments/bench_quantize_runtime.sh: the formats as stored, through the inference runtime."""
    base_dir = results / "quantize" / "bench-runtime"
    if not base_dir.exists():
        return
    print("\n### Latency through the inference runtime\n")
    print("| model | format | products | p50 b1 (ms) | p50 b32 (ms) | vs fp32 b1 | vs fp32 b32 |")
    print("|---|---|---|---:|---:|---:|---:|")
    commits = set()
    for model, model_label in [("teacher", "teacher (6 × 384)"), ("kd-3", "3-layer student (3 × 384)")]:
        rows = {f.stem: json.loads(f.read_text()) for f in (base_dir / model).glob("*.json")}
        if "fp32" not in rows:
            continue
        base = {r["batch"]: r["p50_ms"] for r in rows["fp32"]}
        for key, label in RUNTIME_ROWS:
            if key not in rows:
                continue
            lat = {r["batch"]: r["p50_ms"] for r in rows[key]}
            commits.update(r.get("commit", "") for r in rows[key])
            print(f"| {model_label} | {label} | {rows[key][0]['precision']} | {lat[1]:.2f} | {lat[32]:.1f} | "
                  f"{lat[1] / base[1]:.2f}x | {lat[32] / base[32]:.2f}x |")
    print(f"\nthreads {rows['fp32'][0]['threads']}, ISA {rows['fp32'][0]['isa']}, commit(s): {', '.join(sorted(c for c in commits if c))}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "experiments/results")
