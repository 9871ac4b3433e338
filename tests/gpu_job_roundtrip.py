#!/usr/bin/env python3
"""webpeft -> "continue on a GPU machine" -> transformers' Trainer + PEFT, for anyone with torch.

For each case, `webpeft train` runs a few steps and checkpoints half-way (--save-every); `webpeft
gpu-job` writes that checkpoint as a job directory; the job's own `train.py` (transformers'
Trainer, PEFT, on the CPU here) resumes from it. The losses train.py reports for the remaining
steps must be webpeft's for the same steps: the same batches, adapter, optimiser state and
learning rates, so only float differences between burn and PyTorch remain.

    python tests/gpu_job_roundtrip.py [--webpeft PATH] [CASE ...]

Needs torch, transformers, peft and accelerate. Exits non-zero on any mismatch.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
CAUSAL = ["--data", os.path.join(FIX, "data", "prompt_completion.jsonl"), "--task", "causal-lm"]
CLASSES = ["--data", os.path.join(FIX, "data", "three_labels.csv"), "--task", "seq-cls"]
TOL = 1e-4  # relative

# (name, model, data and task flags, method flags): 6 steps, a checkpoint at step 3.
CASES = [
    ("llama-lora-linear-warmup", "tiny-llama", CAUSAL, ["--method", "lora", "--schedule", "linear", "--warmup", "2"]),
    ("qwen2-dora-cosine-accum-clip", "tiny-qwen2", CAUSAL, ["--method", "dora", "--schedule", "cosine", "--grad-accum", "2", "--clip", "0.5"]),
    ("gpt2-ia3-sgd", "tiny-gpt2", CAUSAL, ["--method", "ia3", "--optimizer", "sgd", "--momentum", "0.9", "--lr", "5e-2"]),
    ("llama-prompt", "tiny-llama", CAUSAL, ["--method", "prompt", "--virtual-tokens", "4", "--lr", "5e-2"]),
    ("bert-seqcls-lora", "tiny-bert", CLASSES, ["--method", "lora"]),
    ("phi3-lora", "tiny-phi3", CAUSAL, ["--method", "lora"]),
    ("modernbert-seqcls-ia3", "tiny-modernbert", CLASSES, ["--method", "ia3"]),
    # A GGUF base, as the page's bundled SmolLM2 and Qwen are: transformers dequantises it.
    ("llama-gguf-lora", os.path.join("gguf", "tiny-llama", "model.gguf"), CAUSAL, ["--method", "lora"]),
    # Dropout in the base's config, as all-MiniLM-L6-v2 has (0.1): webpeft trains the frozen base
    # without dropout, so the job must too, or its losses wander off webpeft's.
    ("bert-dropout-seqcls-lora", "tiny-bert+dropout", CLASSES, ["--method", "lora"]),
]


def with_dropout(src, tmp):
    """A copy of the fixture `src` whose config sets every dropout probability to 0.1."""
    dst = os.path.join(tmp, os.path.basename(src) + "-dropout")
    shutil.copytree(src, dst)
    cfg_path = os.path.join(dst, "config.json")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    for k, v in cfg.items():
        if ("dropout" in k or k.endswith("pdrop")) and isinstance(v, float):
            cfg[k] = 0.1
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(cfg, f)
    return dst


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--webpeft", default=os.environ.get("WEBPEFT_BIN", os.path.expanduser("~/.cache/webpeft/target/release/webpeft")))
    ap.add_argument("cases", nargs="*")
    args = ap.parse_args()
    failures = []
    for name, model, data, method in CASES:
        if args.cases and name not in args.cases:
            continue
        tmp = tempfile.mkdtemp(prefix=f"webpeft-gpujob-{name}-")
        base = os.path.join(FIX, model.split("+")[0])
        if model.endswith("+dropout"):
            base = with_dropout(base, tmp)
        flags = [base, *data, *method, "--steps", "6", "--batch", "2", "--seq-len", "64", "--seed", "3", "--save-every", "3"]
        if "--lr" not in method:
            flags += ["--lr", "1e-2"]
        out = run([args.webpeft, "train", *flags, "--out", os.path.join(tmp, "run")], cwd=ROOT).stdout
        webpeft = {e["step"]: e["loss"] for e in map(json.loads, out.splitlines()) if e.get("event") == "step"}
        run([args.webpeft, "gpu-job", *flags, "--resume", os.path.join(tmp, "run", "checkpoint"), "--out", os.path.join(tmp, "job")], cwd=ROOT)
        job = os.path.join(tmp, "job")
        got = json.loads(run([sys.executable, "train.py", "--base-model", base, "--output-dir", os.path.join(tmp, "out")], cwd=job).stdout.strip().splitlines()[-1])
        assert got["resumed_at"] == 3 and got["steps"] == [4, 5, 6], got
        worst = max(abs(l - webpeft[s]) / abs(webpeft[s]) for s, l in zip(got["steps"], got["losses"]))
        ok = worst <= TOL
        print(f"{name:30} steps 4-6: Trainer {[round(l, 6) for l in got['losses']]} webpeft {[round(webpeft[s], 6) for s in got['steps']]} worst rel {worst:.2e} {'ok' if ok else 'FAIL'}")
        if not ok:
            failures.append(name)
        # The adapter train.py saves is a PEFT adapter webpeft loads.
        run([args.webpeft, "forward", base, "--adapter", os.path.join(tmp, "out"), "--tokens", "5,9,17", "--out", os.path.join(tmp, "forward.safetensors")], cwd=ROOT)
    if failures:
        sys.exit(f"mismatch: {failures}")
    print("all resumed runs continue webpeft's losses")


if __name__ == "__main__":
    main()
