#!/usr/bin/env python3
"""ONNX Runtime as the peer of the condense inference runtime (bench/e2e/runtime_peers.sh).

The model folder (a condense fp32 folder is a Hugging Face BertForSequenceClassification folder)
is exported to ONNX through `transformers` + torch.onnx, optimised with ONNX Runtime's transformer
optimizer (fused Attention, SkipLayerNorm, BiasGelu: its best level for BERT), and run with all
graph optimisations on the given thread count. int8 is ONNX Runtime's dynamic quantization of the
optimised graph (int8 weights per channel, uint8 activations quantized per call), the peer of
`condense bench --precision int8`. Inputs are random ids in [1000, vocab) with a full mask, as in
`condense bench`. Prints one JSON line per (precision, batch, seq).

Never a run-time dependency of condense: only this benchmark imports onnxruntime.
"""
import argparse, json, os, statistics, tempfile, time

import numpy as np


def export(model_dir, out_dir, max_seq):
    import torch
    from transformers import BertForSequenceClassification

    # Eager attention: the exported graph then has the MatMul-Softmax-MatMul pattern that the
    # transformer optimizer fuses into its Attention operator (SDPA exports are not fused).
    model = BertForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    cfg = model.config
    path = os.path.join(out_dir, "model.onnx")
    ids = torch.randint(1000, cfg.vocab_size, (2, 16))
    args = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "seq"} for n in names}
    axes["logits"] = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(model, args, path, input_names=names, output_names=["logits"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    return path, cfg


def optimise(path, cfg, out_dir):
    from onnxruntime.transformers import optimizer

    opt = optimizer.optimize_model(path, model_type="bert", num_heads=cfg.num_attention_heads,
                                   hidden_size=cfg.hidden_size, opt_level=1)
    fused = opt.get_fused_operator_statistics()
    out = os.path.join(out_dir, "model.opt.onnx")
    opt.save_model_to_file(out)
    return out, fused


def quantise(path, out_dir):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = os.path.join(out_dir, "model.int8.onnx")
    # The fused contrib ops have no shape inference: their outputs are float.
    quantize_dynamic(path, out, weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return out


def measure(path, threads, batch, seq, vocab, seconds, iterations):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, vocab, size=(batch, seq), dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    feed = {i.name: feed[i.name] for i in sess.get_inputs()}
    for _ in range(2):
        sess.run(None, feed)
    times = []
    start = time.perf_counter()
    while len(times) < iterations or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.9 * len(times)))], len(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", default="1,32")
    ap.add_argument("--seq", default="128")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--precision", default="fp32,int8")
    a = ap.parse_args()
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        seqs = [int(s) for s in a.seq.split(",")]
        raw, cfg = export(a.model, tmp, max(seqs))
        opt, fused = optimise(raw, cfg, tmp)
        paths = {"fp32": opt}
        if "int8" in a.precision:
            paths["int8"] = quantise(opt, tmp)
        for prec in a.precision.split(","):
            for seq in seqs:
                for b in [int(x) for x in a.batch.split(",")]:
                    p50, p90, n = measure(paths[prec], a.threads, b, seq, cfg.vocab_size, a.seconds, a.iterations)
                    print(json.dumps({"model": a.model, "runtime": "onnxruntime", "version": ort.__version__,
                                      "precision": prec, "batch": b, "seq_len": seq, "p50_ms": p50, "p90_ms": p90,
                                      "iterations": n, "threads": a.threads,
                                      "fused": {k: v for k, v in fused.items() if v}}), flush=True)


if __name__ == "__main__":
    main()
