#!/usr/bin/env python3
"""Reference side of the differential-privacy quality comparison: Opacus + HF PEFT.

LoRA (r 8, alpha 16, query/value) on all-MiniLM-L6-v2 for sentiment on data/rotten_tomatoes
with DP-SGD at several target epsilons, with the procedure of scripts/quality_peft.py (whose
helpers are imported) made private by Opacus. webpeft's side is scripts/quality_dp_webpeft.sh.
Writes docs/quality-dp-opacus.json.

  OMP_NUM_THREADS=1 python scripts/quality_dp.py [--epsilons 1,3,8,inf] [--delta 1e-5]
      [--limit-train N] [--epochs N] [--out docs/quality-dp-opacus.json]

Procedure (quality_peft.py's for LoRA, plus):
- Opacus PrivacyEngine(accountant="rdp").make_private_with_epsilon(module, optimizer,
  data_loader, target_epsilon, target_delta, epochs, max_grad_norm=1.0,
  poisson_sampling=True): Poisson sampling with q = 1 / len(data_loader) = 16 / N (N = 2000
  divides by 16), per-example gradients clipped to 1.0 over all trainable tensors, Gaussian
  noise of std noise_multiplier * 1.0, divided by the expected batch 16; the noise multiplier
  is get_noise_multiplier for epochs / q steps (RDP accountant), as webpeft's --target-epsilon.
- the optimiser (AdamW, lr 1e-3, wd 0.01) and the linear schedule with 10% warm-up are the
  non-private run's, over T = epochs * len(data_loader) steps (the expected number of steps).
- seed 0: torch.manual_seed(0) before loading and before wrapping (init), and a
  torch.Generator seeded 0 for the data loader (Opacus's Poisson draws use it); the noise
  comes from torch's global generator (seeded 0 before make_private; not secure_mode).
- evaluation after the last step: accuracy, macro-F1, mean cross-entropy on eval.
"""
import argparse
import json
import math
import os
import platform
import sys
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import transformers  # noqa: E402
import peft  # noqa: E402
import opacus  # noqa: E402
from opacus import PrivacyEngine  # noqa: E402
from peft import get_peft_model  # noqa: E402
from transformers import AutoModelForSequenceClassification  # noqa: E402

from quality_peft import (  # noqa: E402
    COMMON, LR, PEFT_CONFIG_TEXT, evaluate, load_task, lr_factor, peft_config, run_method)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(eps, args, id2label, label2id, train, evald):
    k = len(id2label)
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=k, id2label=id2label, label2id=label2id,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, dtype=torch.float32)
    torch.manual_seed(args.seed)
    model = get_peft_model(model, peft_config("lora"))
    params = [p for p in model.parameters() if p.requires_grad]
    lr = LR["lora"]
    opt = torch.optim.AdamW(params, lr=lr, betas=tuple(COMMON["betas"]), eps=COMMON["eps"],
                            weight_decay=COMMON["weight_decay"])
    ids, mask, tt, labels = train
    bs = COMMON["batch_size"]
    ds = torch.utils.data.TensorDataset(ids, mask, tt, labels)
    loader = torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=True,
                                         generator=torch.Generator().manual_seed(args.seed))
    steps_per_epoch = len(loader)
    total = steps_per_epoch * args.epochs
    warmup = max(1, round(COMMON["warmup_fraction"] * total))
    torch.manual_seed(args.seed)
    engine = PrivacyEngine(accountant="rdp")
    model, opt, loader = engine.make_private_with_epsilon(
        module=model, optimizer=opt, data_loader=loader, target_epsilon=eps,
        target_delta=args.delta, epochs=args.epochs, max_grad_norm=args.max_grad_norm,
        poisson_sampling=True)
    sigma = opt.noise_multiplier
    q = 1 / steps_per_epoch
    print(f"[eps {eps}] noise multiplier {sigma:.6f}, q {q:.6f}, {total} steps",
          file=sys.stderr, flush=True)
    t0 = time.time()
    step = 0
    sizes = []
    epoch_losses = []
    for epoch in range(args.epochs):
        model.train()
        tot, cnt = 0.0, 0
        for b_ids, b_mask, b_tt, b_lab in loader:
            for g in opt.param_groups:
                g["lr"] = lr * lr_factor(min(step, total - 1), total, warmup)
            opt.zero_grad(set_to_none=True)
            sizes.append(len(b_lab))
            if len(b_lab) > 0:
                logits = model(input_ids=b_ids, attention_mask=b_mask,
                               token_type_ids=b_tt).logits
                loss = torch.nn.functional.cross_entropy(logits, b_lab)
                loss.backward()
                tot += loss.item() * len(b_lab)
                cnt += len(b_lab)
            opt.step()
            step += 1
        epoch_losses.append(tot / max(1, cnt))
        print(f"[eps {eps}] epoch {epoch + 1}/{args.epochs} train_loss {tot / max(1, cnt):.4f} "
              f"epsilon {engine.get_epsilon(args.delta):.3f} ({time.time() - t0:.0f}s)",
              file=sys.stderr, flush=True)
    train_s = time.time() - t0
    m = evaluate(model, evald, k)
    spent = engine.get_epsilon(args.delta)
    print(f"[eps {eps}] eval acc {m['accuracy']:.4f} macro_f1 {m['macro_f1']:.4f} "
          f"loss {m['eval_loss']:.4f} epsilon {spent:.3f} ({train_s:.0f}s)",
          file=sys.stderr, flush=True)
    return {
        "target_epsilon": eps,
        "epsilon_spent": spent,
        "delta": args.delta,
        "accountant": "rdp",
        "noise_multiplier": sigma,
        "max_grad_norm": args.max_grad_norm,
        "sample_rate": q,
        "steps": step,
        "batch_sizes": {"min": min(sizes), "max": max(sizes), "mean": sum(sizes) / len(sizes)},
        "hyperparameters": {"lr": lr, "epochs": args.epochs, "steps_per_epoch": steps_per_epoch,
                            "total_steps": total, "warmup_steps": warmup, **COMMON},
        "metrics": m,
        "train_loss_per_epoch": epoch_losses,
        "train_seconds": round(train_s, 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epsilons", default="1,3,8,inf", help="inf: the non-private run")
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--limit-eval", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "rotten_tomatoes"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "quality-dp-opacus.json"))
    args = ap.parse_args()
    epsilons = [float(e) for e in args.epsilons.split(",") if e.strip()]
    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")

    _, label2id, id2label, train, evald = load_task(args)

    t0 = time.time()
    results = {}
    for eps in epsilons:
        if math.isinf(eps):  # the non-private run, exactly quality_peft.py's
            r = run_method("lora", args, args.model, id2label, label2id, train, evald)
            results["inf"] = {"target_epsilon": "inf", "noise_multiplier": 0.0,
                              "note": "non-private: quality_peft.py's run_method('lora')", **r}
        else:
            results[f"{eps:g}"] = run(eps, args, id2label, label2id, train, evald)
        write(args, results, time.time() - t0, train_rows, eval_rows)
    print(json.dumps({e: r["metrics"] for e, r in results.items()}, indent=1))
    print(f"wall {time.time() - t0:.0f}s; wrote {args.out}", file=sys.stderr)


def write(args, results, wall, train_rows, eval_rows):
    out = {
        "description": "Opacus + HF PEFT reference for webpeft's DP-SGD quality comparison "
                       "(scripts/quality_dp.py)",
        "dataset": {"name": os.path.basename(os.path.normpath(args.data)),
                    "train_size": len(train_rows), "eval_size": len(eval_rows)},
        "model": "all-MiniLM-L6-v2 (models/all-MiniLM-L6-v2, BertForSequenceClassification)",
        "peft_config": PEFT_CONFIG_TEXT["lora"],
        "procedure": __doc__.split("Procedure (quality_peft.py's for LoRA, plus):\n")[1].strip(),
        "epsilons": results,
        "wall_seconds": round(wall, 1),
        "threads": args.threads,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__,
                     "opacus": opacus.__version__},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
