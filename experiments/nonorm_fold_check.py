#!/usr/bin/env python3
"""Why a 3-layer student inherited from the teacher does not train with NoNorm in place of
LayerNorm (docs/RESULTS.md, "Normalisation layers"). A diagnostic, not part of any run.

Rebuilds the student at initialisation (teacher layers 0, 2, 4, embeddings, pooler and classifier;
the `kd-3` start) in PyTorch from the teacher's model.safetensors, runs it with LayerNorm on MRPC
training pairs and prints, per LayerNorm, the spread of the per-token standard deviation σ it
divides by. Then it replaces every LayerNorm by the NoNorm that matches it at the average token
statistics, γ/σ̄ ⊙ x + β − γ·μ̄/σ̄ (Heimersheim 2024 fixes GPT-2's σ to an average the same way),
with μ̄, σ̄ measured once on the LayerNorm model ("one-shot") or norm by norm on the model whose
earlier norms are already replaced ("sequential"), and prints how far the hidden states move and
how much the logits still depend on the input; "copied" is the NoNorm the rows train (γ, β copied).

Usage: python3 experiments/nonorm_fold_check.py TEACHER_DIR [MRPC_DIR]
"""
import csv
import json
import sys

import torch
from safetensors.torch import load_file
from transformers import BertTokenizerFast

teacher = sys.argv[1]
mrpc = sys.argv[2] if len(sys.argv) > 2 else "data/glue/MRPC"
W = load_file(f"{teacher}/model.safetensors")
cfg = json.load(open(f"{teacher}/config.json"))
tok = BertTokenizerFast.from_pretrained(teacher)
rows = list(csv.reader(open(f"{mrpc}/train.tsv"), delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
pairs = [tok(r[3], r[4], truncation=True, max_length=128, return_tensors="pt") for r in rows[:256:2]]
H, heads, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg.get("layer_norm_eps", 1e-12)
LAYERS = [0, 2, 4]


def lin(x, n):
    return x @ W[n + ".weight"].T + W[n + ".bias"]


def forward(e, norm):
    """The student's logits and last hidden states; norm(x, name) stands for each LayerNorm."""
    ids, tt = e["input_ids"], e["token_type_ids"]
    L = ids.shape[1]
    x = (W["bert.embeddings.word_embeddings.weight"][ids] + W["bert.embeddings.position_embeddings.weight"][:L]
         + W["bert.embeddings.token_type_embeddings.weight"][tt])
    x = norm(x, "bert.embeddings.LayerNorm")
    for li in LAYERS:
        p = f"bert.encoder.layer.{li}."
        q, k, v = (lin(x, p + "attention.self." + t).view(1, L, heads, -1).transpose(1, 2)
                   for t in ("query", "key", "value"))
        a = (torch.softmax(q @ k.transpose(-1, -2) / (H // heads) ** 0.5, -1) @ v).transpose(1, 2).reshape(1, L, H)
        x = norm(lin(a, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        x = norm(lin(torch.nn.functional.gelu(lin(x, p + "intermediate.dense")), p + "output.dense") + x,
                 p + "output.LayerNorm")
    return lin(torch.tanh(lin(x[:, 0], "bert.pooler.dense")), "classifier"), x


def student(folded, seen=None):
    """LayerNorm where `folded` has no entry (recording its token statistics into `seen`), else NoNorm."""
    def norm(x, name):
        w, b = W[name + ".weight"], W[name + ".bias"]
        if name in folded:
            mu, sd = folded[name]
            return x * (w / sd) + (b - w * mu / sd)
        mu = x.mean(-1, keepdim=True)
        sd = (x.var(-1, unbiased=False, keepdim=True) + eps).sqrt()
        if seen is not None:
            seen.setdefault(name, []).append((mu.flatten(), sd.flatten()))
        return (x - mu) / sd * w + b
    return norm


def sizes(out):
    """Mean last-layer |h| at [CLS] and elsewhere, and the logits' spread over the pairs."""
    cls = torch.tensor([o[1][0, 0].norm().item() for o in out])
    other = torch.tensor([o[1][0, 1:].norm(dim=-1).mean().item() for o in out])
    spread = ", ".join(f"{v:.1e}" for v in torch.cat([o[0] for o in out]).std(0).tolist())
    return f"|h| [CLS] {cls.mean():.1f}, other tokens {other.mean():.1f}  logit std over pairs {spread}"


def report(label, folded, ref):
    out = [forward(e, student(folded)) for e in pairs]
    rel = torch.tensor([((o[1] - r[1]).norm() / r[1].norm()).item() for o, r in zip(out, ref)])
    print(f"{label:10s} hidden-state error {rel.mean():.2f} (relative)  {sizes(out)}")


with torch.no_grad():
    seen = {}
    ref = [forward(e, student({}, seen)) for e in pairs]
    print(f"{len(pairs)} MRPC training pairs, student = teacher layers {LAYERS} with LayerNorm")
    print(f"{'norm':48s} {'mean σ':>7s} {'min σ':>7s} {'max σ':>7s} {'σ of [CLS]':>10s}  cv")
    for name, lst in seen.items():
        sd = torch.cat([s for _, s in lst])
        first = torch.tensor([s[0].item() for _, s in lst])
        print(f"{name:48s} {sd.mean():7.3f} {sd.min():7.3f} {sd.max():7.3f} {first.mean():10.3f}  {sd.std() / sd.mean():.2f}")
    print(f"{'LayerNorm':10s} {sizes(ref)}")
    stats = lambda lst: (torch.cat([m for m, _ in lst]).mean(), torch.cat([s for _, s in lst]).mean())
    report("copied", {n: (torch.tensor(0.0), torch.tensor(1.0)) for n in seen}, ref)  # γ ⊙ x + β, as the rows ran
    report("one-shot", {n: stats(lst) for n, lst in seen.items()}, ref)
    folded = {}
    for name in seen:
        again = {}
        for e in pairs:
            forward(e, student(folded, again))
        folded[name] = stats(again[name])
    report("sequential", folded, ref)
