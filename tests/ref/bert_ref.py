#!/usr/bin/env python3
"""Reference BERT outputs from Hugging Face `transformers`, for the C++ encoder parity tests.

    bert_ref.py --inputs IN.safetensors --job ARCH ATTN MODEL_DIR OUT.safetensors [--job ...]

IN holds int64 `input_ids`, `token_type_ids` and `attention_mask` ([batch, seq], mask 1 = token,
0 = padding). Each --job loads MODEL_DIR in eval mode, runs it once on those inputs in float32 on
the CPU and writes OUT with:

    hidden_states.<i>   [batch, seq, hidden]  i = 0 (embeddings) .. num_hidden_layers
    attentions.<i>      [batch, heads, seq, seq]  (only for ATTN = eager; sdpa returns none)
    pooled              [batch, hidden]   (tanh(dense([CLS])), BertModel's pooler_output)
    logits              [batch, labels]   (only for ARCH = cls)

ARCH is `base` (BertModel: a sentence-transformers teacher folder without a head) or `cls`
(BertForSequenceClassification: a folder written by condense save_pretrained). ATTN is the
attention implementation (`eager` or `sdpa`); both must agree with condense, which uses its own
softmax when attention maps are requested and the fused kernel otherwise. Each folder is loaded
once with the default implementation and switched with set_attn_implementation; the one actually
used is written to OUT's metadata (`attn`) so the caller can check it.

For `cls` the job fails when loading reports missing, unexpected or mismatched keys: a folder
condense wrote must load into transformers without any freshly initialised tensor, otherwise the
comparison would be against random weights. Several jobs share one interpreter because importing
transformers dominates the run time.
"""
import argparse
import sys


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inputs", required=True)
    p.add_argument("--job", nargs=4, action="append", required=True, metavar=("ARCH", "ATTN", "MODEL", "OUT"))
    args = p.parse_args()

    import torch
    from safetensors.torch import load_file, save_file
    from transformers import BertForSequenceClassification, BertModel

    torch.manual_seed(0)
    inputs = load_file(args.inputs)
    ids, types, mask = inputs["input_ids"], inputs["token_type_ids"], inputs["attention_mask"]

    models = {}  # (arch, dir) -> model: loading dominates, so each folder is loaded once
    for arch, attn, model_dir, out in args.job:
        if arch not in ("base", "cls") or attn not in ("eager", "sdpa"):
            sys.exit(f"bad job {arch} {attn}: ARCH must be base|cls, ATTN eager|sdpa")
        if (arch, model_dir) not in models:
            cls = BertModel if arch == "base" else BertForSequenceClassification
            # No attn_implementation: the default a user gets (sdpa in transformers 5).
            model, info = cls.from_pretrained(model_dir, output_loading_info=True, dtype=torch.float32)
            if arch == "cls":
                bad = {k: v for k, v in info.items() if v}
                if bad:
                    sys.exit(f"{model_dir}: transformers loading info not clean: {info}")
            models[(arch, model_dir)] = model
        model = models[(arch, model_dir)]
        if model.config._attn_implementation != attn:
            model.set_attn_implementation(attn)
        if model.config._attn_implementation != attn:
            sys.exit(f"{model_dir}: cannot switch attention to {attn} (is {model.config._attn_implementation})")
        model.eval()
        want_attn = attn == "eager"
        result = {}
        # One forward per job (the teacher batch costs seconds on a shared CPU). The head model does
        # not return the pooled output, so a hook on its pooler records it.
        pooled = []
        bert = model if arch == "base" else model.bert
        hook = bert.pooler.register_forward_hook(lambda _m, _i, out: pooled.append(out))
        with torch.no_grad():
            o = model(input_ids=ids, token_type_ids=types, attention_mask=mask, output_hidden_states=True,
                      output_attentions=want_attn)
        hook.remove()
        if len(pooled) != 1:
            sys.exit(f"{model_dir}: expected one pooler call, got {len(pooled)}")
        for i, h in enumerate(o.hidden_states):
            result[f"hidden_states.{i}"] = h.contiguous()
        if want_attn:
            if not o.attentions or o.attentions[0] is None:
                sys.exit(f"{model_dir}: eager attention returned no attention maps")
            for i, a in enumerate(o.attentions):
                result[f"attentions.{i}"] = a.contiguous()
        result["pooled"] = pooled[0].contiguous()
        if arch == "cls":
            result["logits"] = o.logits.contiguous()
        save_file(result, out, metadata={"arch": arch, "attn": model.config._attn_implementation})
        print(f"{arch} {attn} {model_dir}: {len(o.hidden_states)} hidden states -> {out}")


if __name__ == "__main__":
    main()
