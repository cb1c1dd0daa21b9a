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
`attn_implementation` (`eager` or `sdpa`); both must agree with condense, which uses its own
softmax when attention maps are requested and the fused kernel otherwise.

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

    for arch, attn, model_dir, out in args.job:
        if arch not in ("base", "cls") or attn not in ("eager", "sdpa"):
            sys.exit(f"bad job {arch} {attn}: ARCH must be base|cls, ATTN eager|sdpa")
        cls = BertModel if arch == "base" else BertForSequenceClassification
        model, info = cls.from_pretrained(model_dir, attn_implementation=attn, output_loading_info=True,
                                          dtype=torch.float32)
        if arch == "cls":
            bad = {k: v for k, v in info.items() if k != "error_msgs" and v}
            if bad or info.get("error_msgs"):
                sys.exit(f"{model_dir}: transformers loading info not clean: {info}")
        model.eval()
        want_attn = attn == "eager"
        result = {}
        with torch.no_grad():
            encoder = model if arch == "base" else model.bert
            o = encoder(input_ids=ids, token_type_ids=types, attention_mask=mask, output_hidden_states=True,
                        output_attentions=want_attn)
            for i, h in enumerate(o.hidden_states):
                result[f"hidden_states.{i}"] = h.contiguous()
            if want_attn:
                if not o.attentions or o.attentions[0] is None:
                    sys.exit(f"{model_dir}: eager attention returned no attention maps")
                for i, a in enumerate(o.attentions):
                    result[f"attentions.{i}"] = a.contiguous()
            result["pooled"] = o.pooler_output.contiguous()
            if arch == "cls":
                # The full head forward, not classifier(pooled), so dropout/eval handling is HF's own.
                result["logits"] = model(input_ids=ids, token_type_ids=types, attention_mask=mask).logits.contiguous()
        save_file(result, out, metadata={"arch": arch, "attn": model.config._attn_implementation})
        print(f"{arch} {attn} {model_dir}: {len(o.hidden_states)} hidden states -> {out}")


if __name__ == "__main__":
    main()
