#!/usr/bin/env python3
"""webpeft -> Python PEFT round trip, for anyone with torch.

For each case, `webpeft train` writes an adapter; this script loads it with
`PeftModel.from_pretrained` (unchanged files) and compares PEFT's logits with
`webpeft forward --adapter` on the same tokens. For mergeable methods it also
runs `webpeft merge` and loads the merged directory with plain transformers.

    python tests/peft_roundtrip.py [--webpeft PATH] [--out DIR] [CASE ...]

Needs torch, transformers and peft (see tests/fixtures/peft/MANIFEST.json for
the versions the fixtures were made with). Exits non-zero on any mismatch.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from peft import PeftModel
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
DATA = os.path.join(FIX, "data")

# (name, model dir, task, method, extra train flags)
CASES = [
    ("llama-lora", "tiny-llama", "causal-lm", "lora", ["--r", "4", "--alpha", "8"]),
    ("llama-rslora", "tiny-llama", "causal-lm", "lora", ["--r", "4", "--alpha", "8", "--rslora"]),
    ("qwen2-dora", "tiny-qwen2", "causal-lm", "dora", ["--r", "4"]),
    ("gpt2-lora", "tiny-gpt2", "causal-lm", "lora", []),
    ("gpt2-bitfit", "tiny-gpt2", "causal-lm", "bitfit", []),
    ("llama-ia3", "tiny-llama", "causal-lm", "ia3", []),
    ("llama-prompt", "tiny-llama", "causal-lm", "prompt", ["--virtual-tokens", "4"]),
    ("gpt2-prefix", "tiny-gpt2", "causal-lm", "prefix", ["--virtual-tokens", "4"]),
    ("qwen2-prefix", "tiny-qwen2", "causal-lm", "prefix", ["--virtual-tokens", "4"]),
    ("bert-lora", "tiny-bert", "seq-cls", "lora", []),
    ("bert-bitfit", "tiny-bert", "seq-cls", "bitfit", []),
    ("bert-ia3", "tiny-bert", "seq-cls", "ia3", []),
    ("bert-prompt", "tiny-bert", "seq-cls", "prompt", ["--virtual-tokens", "4"]),
    ("llama-seqcls-lora", "tiny-llama", "seq-cls", "lora", []),
    ("gpt2-seqcls-ia3", "tiny-gpt2", "seq-cls", "ia3", []),
    ("qwen3-lora", "tiny-qwen3", "causal-lm", "lora", ["--r", "4", "--alpha", "8"]),
    ("gemma3-lora", "tiny-gemma3", "causal-lm", "lora", ["--r", "4", "--alpha", "8"]),
    ("gemma3-dora", "tiny-gemma3", "causal-lm", "dora", ["--r", "4"]),
    ("gemma3-ia3", "tiny-gemma3", "causal-lm", "ia3", []),
    ("gemma3-prefix", "tiny-gemma3", "causal-lm", "prefix", ["--virtual-tokens", "4"]),
    ("gemma3-seqcls-lora", "tiny-gemma3", "seq-cls", "lora", []),
    ("roberta-lora", "tiny-roberta", "seq-cls", "lora", []),
    ("roberta-bitfit", "tiny-roberta", "seq-cls", "bitfit", []),
    ("roberta-ia3", "tiny-roberta", "seq-cls", "ia3", []),
    ("xlm-roberta-dora", "tiny-xlm-roberta", "seq-cls", "dora", ["--r", "4"]),
    ("xlm-roberta-prompt", "tiny-xlm-roberta", "seq-cls", "prompt", ["--virtual-tokens", "4"]),
    ("phi3-lora", "tiny-phi3", "causal-lm", "lora", ["--r", "4", "--alpha", "8"]),
    ("phi3-lora-all", "tiny-phi3", "causal-lm", "lora", ["--r", "4", "--targets", "qkv_proj,o_proj,gate_up_proj,down_proj"]),
    ("phi3-dora", "tiny-phi3", "causal-lm", "dora", ["--r", "4"]),
    ("phi3-ia3", "tiny-phi3", "causal-lm", "ia3", []),
    ("phi3-prefix", "tiny-phi3", "causal-lm", "prefix", ["--virtual-tokens", "4"]),
    ("phi3-seqcls-lora", "tiny-phi3", "seq-cls", "lora", []),
    ("modernbert-lora", "tiny-modernbert", "seq-cls", "lora", []),
    ("modernbert-dora", "tiny-modernbert", "seq-cls", "dora", ["--r", "4"]),
    ("modernbert-ia3", "tiny-modernbert", "seq-cls", "ia3", []),
    ("modernbert-prompt", "tiny-modernbert", "seq-cls", "prompt", ["--virtual-tokens", "4"]),
]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--webpeft", default=os.environ.get("WEBPEFT_BIN", os.path.expanduser("~/.cache/webpeft/target/release/webpeft")))
    ap.add_argument("--out", default=tempfile.mkdtemp(prefix="webpeft-roundtrip-"))
    ap.add_argument("cases", nargs="*", help="case names to run (default: all)")
    args = ap.parse_args()
    torch.manual_seed(0)
    ids = [1, 5, 9, 17, 33, 65, 100, 7, 3, 12]
    failures = []
    for name, model, task, method, extra in CASES:
        if args.cases and name not in args.cases:
            continue
        base = os.path.join(FIX, model)
        out = os.path.join(args.out, name)
        data = os.path.join(DATA, "three_labels.csv" if task == "seq-cls" else "prompt_completion.jsonl")
        # A high learning rate so the adapter moves well away from its init.
        run([args.webpeft, "train", base, "--data", data, "--task", task, "--method", method, "--steps", "6", "--batch", "4",
             "--lr", "5e-2", "--seq-len", "32", "--out", out, *extra])
        ours_file = os.path.join(out, "forward.safetensors")
        run([args.webpeft, "forward", base, "--adapter", out, "--tokens", ",".join(map(str, ids)), "--out", ours_file])
        ours = load_file(ours_file)["logits"]
        if task == "seq-cls":
            labels = json.load(open(os.path.join(out, "webpeft.json")))["labels"]
            hf = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(labels))
        else:
            hf = AutoModelForCausalLM.from_pretrained(base)
        base_logits = hf(torch.tensor([ids])).logits[0].detach().numpy()
        peft_model = PeftModel.from_pretrained(hf, out).eval()
        with torch.no_grad():
            theirs = peft_model(input_ids=torch.tensor([ids])).logits[0].numpy()
        diff = float(np.abs(theirs - ours).max())
        moved = float(np.abs(theirs[-base_logits.shape[0]:] - base_logits).max()) if theirs.ndim > 1 else float(np.abs(theirs - base_logits).max())
        status = "ok" if diff <= 1e-4 and moved > 1e-3 else "MISMATCH"
        line = f"{name:14s} PEFT vs webpeft max |diff| {diff:.2e} (adapter moved logits by {moved:.3f}) {status}"
        if method not in ("prompt", "prefix"):
            merged = os.path.join(out, "merged")
            run([args.webpeft, "merge", base, "--adapter", out, "--out", merged])
            cls = AutoModelForSequenceClassification if task == "seq-cls" else AutoModelForCausalLM
            m = cls.from_pretrained(merged).eval()
            with torch.no_grad():
                mlog = m(torch.tensor([ids])).logits[0].numpy()
            mdiff = float(np.abs(mlog - theirs).max())
            line += f"; merged in transformers vs PEFT {mdiff:.2e}"
            if mdiff > 1e-4:
                status = "MISMATCH"
        print(line)
        if status != "ok":
            failures.append(name)
    if failures:
        sys.exit(f"round trip failed for: {', '.join(failures)}")
    ran = [c for c in CASES if not args.cases or c[0] in args.cases]
    print(f"all {len(ran)} adapters load in PEFT with webpeft's logits")


if __name__ == "__main__":
    main()
