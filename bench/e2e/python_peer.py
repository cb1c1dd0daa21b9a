#!/usr/bin/env python3
"""The Python peer of `condense finetune` / `condense distill`: the same training loop in PyTorch +
transformers, for throughput comparisons run in the same command (bench/e2e/train_throughput.sh).

Same work as condense: BertForSequenceClassification, WordPiece with truncation to 128, length-
bucketed batches (chunks of 50 batches sorted by length) with dynamic padding, AdamW (no decay on
bias/LayerNorm), linear warm-up/decay, gradient clipping at 1.0. `--mode distill` builds a student
from every other teacher layer and trains on cached teacher logits with KL(T) + CE, as condense does.
Prints one JSON line: examples/s of the training loop (tokenization and model loading excluded).
"""
import argparse, json, random, time

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, BertForSequenceClassification


def read_sst2(path, limit, seed):
    rows = []
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            s, l = line.rstrip("\n").split("\t")
            rows.append((s, int(l)))
    random.Random(seed).shuffle(rows)
    return rows[:limit] if limit else rows


def batches(lengths, bs, seed, factor=50):
    rng = random.Random(seed)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    out = []
    for c in range(0, len(idx), bs * factor):
        chunk = sorted(idx[c:c + bs * factor], key=lambda i: lengths[i])
        out += [chunk[b:b + bs] for b in range(0, len(chunk), bs)]
    rng.shuffle(out)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="SST-2 train.tsv")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", choices=["finetune", "distill"], default="finetune")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--bf16", action="store_true", help="forward under torch.autocast('cpu', torch.bfloat16)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    rows = read_sst2(args.data, args.limit, 0)
    tok = AutoTokenizer.from_pretrained(args.model)
    enc = [tok(s, truncation=True, max_length=128)["input_ids"] for s, _ in rows]
    labels = torch.tensor([l for _, l in rows])
    model = BertForSequenceClassification.from_pretrained(args.model, num_labels=2)

    def make(idx):
        n = max(len(enc[i]) for i in idx)
        ids = torch.zeros(len(idx), n, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, i in enumerate(idx):
            ids[r, :len(enc[i])] = torch.tensor(enc[i])
            mask[r, :len(enc[i])] = 1
        return ids, mask, torch.zeros_like(ids), torch.tensor(idx)

    teacher_logits = None
    if args.mode == "distill":
        teacher = model.eval()
        teacher_logits = torch.empty(len(enc), 2)
        t0 = time.perf_counter()
        with torch.no_grad():
            for idx in batches([len(e) for e in enc], 64, 0):
                ids, mask, tt, ix = make(idx)
                teacher_logits[ix] = teacher(input_ids=ids, attention_mask=mask, token_type_ids=tt).logits
        cache_s = time.perf_counter() - t0
        cfg = teacher.config.to_dict()
        cfg["num_hidden_layers"] = args.layers
        student = BertForSequenceClassification(type(teacher.config).from_dict(cfg))
        sd = teacher.state_dict()
        k = teacher.config.num_hidden_layers // args.layers
        new = {}
        for name in student.state_dict():
            src = name
            if name.startswith("bert.encoder.layer."):
                parts = name.split(".")
                parts[3] = str(int(parts[3]) * k)
                src = ".".join(parts)
            new[name] = sd[src]
        student.load_state_dict(new)
        model = student
    model.train()

    decay = [p for n, p in model.named_parameters() if "bias" not in n and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=5e-5, eps=1e-8)
    plan = [batches([len(e) for e in enc], args.batch_size, 42 + e) for e in range(args.epochs)]
    total = sum(len(p) for p in plan)
    warm = max(1, int(0.1 * total + 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: s / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    n = 0
    t0 = time.perf_counter()
    for epoch_plan in plan:
        for idx in epoch_plan:
            ids, mask, tt, ix = make(idx)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                logits = model(input_ids=ids, attention_mask=mask, token_type_ids=tt).logits.float()
            if teacher_logits is None:
                loss = F.cross_entropy(logits, labels[ix])
            else:
                T = 2.0
                soft = F.kl_div(F.log_softmax(logits / T, 1), F.log_softmax(teacher_logits[ix] / T, 1),
                                reduction="batchmean", log_target=True) * T * T
                loss = 0.5 * soft + 0.5 * F.cross_entropy(logits, labels[ix])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            n += len(idx)
    secs = time.perf_counter() - t0
    out = {"peer": "pytorch+transformers", "mode": args.mode, "examples": n, "seconds": round(secs, 3),
           "examples_per_second": round(n / secs, 1), "threads": args.threads, "torch": torch.__version__, "bf16": args.bf16}
    if teacher_logits is not None:
        out["teacher_cache_seconds"] = round(cache_s, 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
