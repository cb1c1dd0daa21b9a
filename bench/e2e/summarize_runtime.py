#!/usr/bin/env python3
"""Tables and plot of bench/e2e/runtime_peers.sh.

Usage: summarize_runtime.py OUT_DIR  (prints markdown; writes OUT_DIR/latency-vs-seq.png)

The physical limit of a shape is the operations its logits need (2 per multiply-add: the six
products of each layer, QKᵀ and P·V, pooler and classifier, read from the model's config.json)
divided by this machine's measured peak for the precision on 2 cores: fp32 231 GFLOP/s, bf16 460,
int8 920 GOP/s (CONDENSE_PEAKS="231,460,920" overrides). The classifier reads only [CLS], so in the
last layer only the keys and values are needed for every token; the query, its attention row and
everything after for [CLS] alone (a runtime that computes all of them, as ONNX Runtime and eager
LibTorch do, and condense's int8 with per-call ranges, does up to a quarter more work on a 3-layer
model than the limit counts). Every operation is counted at the precision's peak, although
attention, softmax and LayerNorm run in fp32 in every runtime, so no run can reach 1.00×.
Tables made before this count (results of commits before the runtime's [CLS]-only last layer)
counted the last layer in full.
"""
import json, os, pathlib, sys

PEAK = dict(zip(["fp32", "bf16", "int8"], [float(x) for x in os.environ.get("CONDENSE_PEAKS", "231,460,920").split(",")]))


def config_of(out, name, model_dir):
    """The model's config.json: the copy runtime_peers.sh keeps beside the results, else the folder's."""
    kept = out / f"{name}-config.json"
    return json.loads((kept if kept.exists() else pathlib.Path(model_dir) / "config.json").read_text())


def gops(cfg, batch, seq):
    h = cfg["hidden_size"]
    layers = cfg["num_hidden_layers"]
    ffn = cfg["intermediate_size"]
    tokens = batch * seq
    per_token = 4 * h * h + 2 * h * ffn  # Q, K, V, attention output, FFN in, FFN out
    f = (layers - 1) * (2 * tokens * per_token + 4 * batch * seq * seq * h)
    # The last layer: K and V of every token; Q, one attention row and the rest for [CLS] alone.
    f += 2 * tokens * 2 * h * h + 2 * batch * (per_token - 2 * h * h) + 4 * batch * seq * h
    f += 2 * batch * (h * h + h * cfg.get("num_labels", 2))
    return f / 1e9


def load(out):
    """The fastest p50 per (model, runtime, precision, batch, seq) over the rounds r1, r2, …"""
    rows = {}  # (model, runtime, precision, batch, seq) -> row
    models = {}
    for f in sorted(out.glob("r*/*.json")) + sorted(out.glob("r*/*.jsonl")):
        if f.name.endswith(".tmp"):
            continue
        name = f.name.split("-")[0]
        text = f.read_text().strip()
        items = json.loads(text) if f.suffix == ".json" else [json.loads(l) for l in text.splitlines() if l.strip()]
        for r in items:
            models[name] = r["model"]
            if r["runtime"] == "onnxruntime":
                key = (name, "ort", r["precision"])
            elif r["runtime"] == "torch":
                key = (name, "torch", "fp32")
            else:
                key = (name, "condense", f.stem.split("-")[-1])
            key += (r["batch"], r["seq_len"])
            r["rounds"] = rows[key]["rounds"] + 1 if key in rows else 1
            if key not in rows or r["p50_ms"] < rows[key]["p50_ms"]:
                rows[key] = r
            else:
                rows[key]["rounds"] = r["rounds"]
    return rows, models


def main():
    out = pathlib.Path(sys.argv[1])
    rows, models = load(out)
    meta = next((r for k, r in rows.items() if k[1] == "condense"), {})
    rounds = min((r["rounds"] for r in rows.values()), default=0)
    print(f"threads {meta.get('threads')}, ISA {meta.get('isa')}, commit {meta.get('commit')}; "
          f"p50 latency in ms, the fastest of {rounds} rounds (p90 in the json files); limit = operations / peak "
          f"(fp32 {PEAK['fp32']:.0f}, bf16 {PEAK['bf16']:.0f}, int8 {PEAK['int8']:.0f} GOP/s).\n")
    print("| model | precision | batch | seq | limit | condense | × limit | ONNX Runtime | ORT ÷ condense "
          "| eager LibTorch | eager ÷ condense | condense examples/s | peak RSS |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    shapes = sorted({(k[3], k[4]) for k in rows}, key=lambda s: (s[0], s[1]))
    for name in ["teacher", "student"]:
        if name not in models:
            continue
        cfg = config_of(out, name, models[name])
        label = f"{name} {cfg['num_hidden_layers']}L×{cfg['hidden_size']}"
        for prec in ["fp32", "bf16", "int8"]:
            for b, s in shapes:
                c = rows.get((name, "condense", prec, b, s))
                if c is None:
                    continue
                limit = gops(cfg, b, s) / PEAK[prec] * 1e3
                o = rows.get((name, "ort", prec, b, s))
                t = rows.get((name, "torch", prec, b, s))
                cell = lambda r: f"{r['p50_ms']:.2f}" if r else "–"
                ratio = lambda r: f"{r['p50_ms'] / c['p50_ms']:.2f}×" if r else "–"
                print(f"| {label} | {prec} | {b} | {s} | {limit:.2f} | {c['p50_ms']:.2f} | {c['p50_ms'] / limit:.2f}× "
                      f"| {cell(o)} | {ratio(o)} | {cell(t)} | {ratio(t)} | {c['examples_per_second']:.1f} "
                      f"| {c['peak_rss_bytes'] / 2**20:.0f} MiB |")
    kern = {r.get("kernels") for k, r in rows.items() if k[1] == "condense"}
    print("\nkernels: " + "; ".join(sorted(k for k in kern if k)))
    ort = next((r for k, r in rows.items() if k[1] == "ort"), None)
    if ort:
        print(f"ONNX Runtime {ort.get('version')}, fused operators: {ort.get('fused')}")
    plot(out, rows, models)


def plot(out, rows, models):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    names = [n for n in ["teacher", "student"] if n in models]
    fig, axes = plt.subplots(len(names), 2, figsize=(11, 4.2 * len(names)), squeeze=False)
    series = [("condense", "fp32", "C0", "-"), ("condense", "bf16", "C1", "-"), ("condense", "int8", "C2", "-"),
              ("ort", "fp32", "C0", "--"), ("ort", "int8", "C2", "--"), ("torch", "fp32", "C7", ":")]
    for i, name in enumerate(names):
        cfg = config_of(out, name, models[name])
        for j, b in enumerate([1, 32]):
            ax = axes[i][j]
            for rt, prec, color, style in series:
                pts = sorted((k[4], r["p50_ms"]) for k, r in rows.items() if k[:3] == (name, rt, prec) and k[3] == b)
                if pts:
                    label = {"condense": "condense", "ort": "ONNX Runtime", "torch": "eager LibTorch"}[rt] + " " + prec
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color, marker="o", label=label)
            seqs = sorted({k[4] for k in rows if k[0] == name and k[3] == b})
            if seqs:
                ax.plot(seqs, [gops(cfg, b, s) / PEAK["int8"] * 1e3 for s in seqs], "-.", color="k", label="int8 limit")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(seqs, [str(s) for s in seqs])
            ax.set_xlabel("sequence length")
            ax.set_ylabel("p50 latency (ms)")
            ax.set_title(f"{name} ({cfg['num_hidden_layers']} layers), batch {b}")
            ax.grid(True, which="both", alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "latency-vs-seq.png", dpi=110)


if __name__ == "__main__":
    main()
