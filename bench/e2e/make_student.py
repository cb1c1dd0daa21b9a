#!/usr/bin/env python3
"""Writes the runtime benchmark's 3-layer student: the teacher with layers 0, 2 and 4 kept (the
layer-skip initialisation condense distill uses), as a Hugging Face BertForSequenceClassification
folder. Latency does not depend on the weights' values, only on the shapes, so the benchmark does not
need a trained student; a trained one (runs/default/student) has the same shapes.

Usage: make_student.py TEACHER_DIR OUT_DIR [--layers 0,2,4]
"""
import argparse, os, shutil

import torch
from transformers import BertForSequenceClassification


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("teacher")
    ap.add_argument("out")
    ap.add_argument("--layers", default="0,2,4")
    a = ap.parse_args()
    keep = [int(x) for x in a.layers.split(",")]
    torch.manual_seed(0)
    m = BertForSequenceClassification.from_pretrained(a.teacher, num_labels=2)
    m.bert.encoder.layer = torch.nn.ModuleList([m.bert.encoder.layer[i] for i in keep])
    m.config.num_hidden_layers = len(keep)
    tmp = a.out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    m.save_pretrained(tmp, safe_serialization=True)
    shutil.copy(os.path.join(a.teacher, "vocab.txt"), tmp)
    shutil.rmtree(a.out, ignore_errors=True)
    os.rename(tmp, a.out)


if __name__ == "__main__":
    main()
