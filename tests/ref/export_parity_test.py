#!/usr/bin/env python3
"""End-to-end check that a folder written by `condense export` is a working Hugging Face model.

1. `condense export --model $CONDENSE_TEACHER_DIR --out TMP/exported`: the teacher is a bare
   BertModel (sentence-transformers layout), the export a BertForSequenceClassification with a
   freshly initialised head, plus the tokenizer files copied from the teacher.
2. `condense eval --model TMP/exported --task sst2 --limit 64 --logits TMP/logits.safetensors`:
   our logits for the first 64 SST-2 dev sentences, in dataset order.
3. transformers' AutoTokenizer + AutoModelForSequenceClassification load TMP/exported with no
   missing, unexpected or mismatched keys and produce the same logits (max abs diff <= 1e-4)
   on the same sentences, truncated to 128 tokens as `condense eval` does by default.

4. The same for pruned models: the teacher pruned to 50 % of its heads and FFN neurons (physically
   shrunk, per-layer shapes; transformers builds it with the modeling file written beside it,
   trust_remote_code=True) and pruned to 80 % unstructured sparsity (stored sparse, exported dense
   to a plain BertForSequenceClassification).

A failure here and not in tests/unit/nn_bert_test.cpp points at the CLI, the tokenizer files
or the config written by export, rather than at the encoder itself.

Environment (set by CTest): CONDENSE_CLI, CONDENSE_TEACHER_DIR, CONDENSE_SOURCE_DIR,
CONDENSE_BINARY_DIR. Without a teacher the test prints SKIP and passes.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TOLERANCE = 1e-4
LIMIT = 64

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tokenize_ref import column, read_rows  # noqa: E402  (the same TSV rules as the C++ tests)


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def run(cmd):
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    r = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(r.stdout, end="")
    if r.returncode != 0:
        fail(f"{cmd[0]} {cmd[1]} exited with status {r.returncode}")


def sst2_dir(source):
    for d in (source / "data" / "glue" / "SST-2", source.parent / "shared" / "data" / "glue" / "SST-2"):
        if (d / "dev.tsv").exists():
            return d
    return None


def check(cli, exported, data, scratch, expect_class, remote):
    """condense eval's logits for `exported` against transformers' on the same sentences."""
    logits_file = Path(str(scratch) + ".logits.safetensors")
    run([cli, "eval", "--model", exported, "--task", "sst2", "--data", data, "--limit", LIMIT,
         "--logits", logits_file, "--threads", "2"])

    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    ours = load_file(str(logits_file))["logits"].double()
    header, rows = read_rows(data / "dev.tsv")
    sentences = [r[column(header, "sentence", data / "dev.tsv")] for r in rows[:LIMIT]]
    if ours.shape != (len(sentences), 2):
        fail(f"condense eval wrote logits of shape {tuple(ours.shape)}, expected ({len(sentences)}, 2)")

    tokenizer = AutoTokenizer.from_pretrained(exported)
    model, info = AutoModelForSequenceClassification.from_pretrained(exported, output_loading_info=True,
                                                                     trust_remote_code=remote)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        fail(f"transformers did not load {exported} cleanly: {problems}")
    if type(model).__name__ != expect_class:
        fail(f"{exported} loads as {type(model).__name__}, expected {expect_class}")
    model.eval()
    batch = tokenizer(sentences, truncation=True, max_length=128, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = model(**batch).logits.double()

    diff = (ours - ref).abs()
    worst = int(diff.max(dim=1).values.argmax())
    max_diff = float(diff.max())
    print(f"max abs logit diff over {len(sentences)} SST-2 dev sentences ({expect_class}): {max_diff:.3g} "
          f"(worst row {worst}: ours {ours[worst].tolist()}, transformers {ref[worst].tolist()})")
    if not max_diff <= TOLERANCE:
        fail(f"logits differ by {max_diff:.3g} > {TOLERANCE} (row {worst}: '{sentences[worst]}'); "
             f"files kept in {exported}")


def main():
    teacher = os.environ.get("CONDENSE_TEACHER_DIR", "")
    cli = os.environ.get("CONDENSE_CLI", "")
    source = Path(os.environ.get("CONDENSE_SOURCE_DIR", Path(__file__).resolve().parents[2]))
    if not teacher:
        print("SKIP: CONDENSE_TEACHER_DIR is not set")
        return
    if not cli or not Path(cli).is_file():
        fail(f"CONDENSE_CLI '{cli}' is not a built condense binary")
    data = sst2_dir(source)
    if data is None:
        print(f"SKIP: no SST-2 dev.tsv under {source}/data/glue or ../shared/data/glue")
        return

    scratch_root = Path(os.environ.get("CONDENSE_BINARY_DIR", tempfile.gettempdir())) / "test_scratch"
    scratch_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="export_parity.", dir=scratch_root))
    exported = tmp / "exported"

    run([cli, "export", "--model", teacher, "--out", exported])
    check(cli, exported, data, tmp / "plain", "BertForSequenceClassification", remote=False)

    prune = [cli, "prune", "--model", exported, "--task", "sst2", "--data", data, "--train-limit", 64,
             "--epochs", 0, "--score-batches", 2, "--threads", "2", "--quiet"]
    run(prune + ["--out", tmp / "shrunk", "--granularity", "heads+neurons", "--sparsity", 0.5])
    run([cli, "export", "--model", tmp / "shrunk", "--out", tmp / "shrunk-hf"])
    check(cli, tmp / "shrunk-hf", data, tmp / "shrunk", "CondensePrunedBertForSequenceClassification", remote=True)

    run(prune + ["--out", tmp / "sparse", "--sparsity", 0.8])
    run([cli, "export", "--model", tmp / "sparse", "--out", tmp / "sparse-hf"])
    check(cli, tmp / "sparse-hf", data, tmp / "sparse", "BertForSequenceClassification", remote=False)
    shutil.rmtree(tmp, ignore_errors=True)
    print("OK")


if __name__ == "__main__":
    main()
