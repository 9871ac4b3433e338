#!/usr/bin/env python3
"""Training-step benchmark: `webpeft bench train` next to PyTorch + PEFT on the
same configs, each in its own process (for a clean peak-memory figure), with
the ratio. A measurement, never a test.

    python scripts/bench_train.py [--devices cpu] [--threads 2] [--iters 3]
        [--configs minilm,smollm2,qwen0.5b] [--variants f32,blocks,blocks+ckpt]

Configs: LoRA (r 8, alpha 8, PEFT's default targets, AdamW) on
all-MiniLM-L6-v2 seq-cls, batch 16 x 64; on SmolLM2-135M (Q4_1 GGUF) and on
Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, `scripts/fetch-models.sh --big`)
causal-lm, batch 4 x 128. PyTorch runs the GGUF dequantised to f32 (transformers'
loader); webpeft runs each variant: `f32` (`--quantize f32`, the same f32 base),
`blocks` (the GGUF's blocks kept, the default) and `blocks+ckpt` (also
`--gradient-checkpointing`). One step = forward, backward, optimiser step and
reading the loss back.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

from bench_forward import ids  # the token rows webpeft's bench uses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/webpeft/target"))
CONFIGS = {
    "minilm": ("all-MiniLM-L6-v2", "LoRA seq-cls 16x64", 16, 64),
    "smollm2": ("SmolLM2-135M (Q4_1)", "LoRA causal-lm 4x128", 4, 128),
    "qwen0.5b": ("Qwen2.5-Coder-0.5B (Q4_K_M)", "LoRA causal-lm 4x128", 4, 128),
}
GGUF = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "qwen0.5b": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"}
VARIANTS = {"f32": ["--quantize", "f32"], "blocks": [], "blocks+ckpt": ["--gradient-checkpointing"]}


def torch_child(config, iters, threads):
    """Runs one config in PyTorch + PEFT and prints a JSON line."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    _, _, batch, seq = CONFIGS[config]
    if config == "minilm":
        m = AutoModelForSequenceClassification.from_pretrained(os.path.join(ROOT, "models/all-MiniLM-L6-v2"), num_labels=2)
        m = get_peft_model(m, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=8))
        x = torch.tensor(ids(batch, seq, m.config.vocab_size))
        y = torch.tensor([i % 2 for i in range(batch)])
        step_inputs = dict(input_ids=x, labels=y)
    else:
        m = AutoModelForCausalLM.from_pretrained(os.path.join(ROOT, "models"), gguf_file=GGUF[config], dtype=torch.float32)
        m = get_peft_model(m, LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=8))
        x = torch.tensor(ids(batch, seq, m.config.vocab_size))
        step_inputs = dict(input_ids=x, labels=x)
    m.train()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.01)

    def step():
        loss = m(**step_inputs).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.item()

    step()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    ms = (time.perf_counter() - start) * 1000 / iters
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"ms": ms, "rss": rss}))


def webpeft_row(config, device, iters, extra):
    exe = os.path.join(TARGET, "release", "webpeft")
    out = subprocess.run([exe, "bench", "train", "--models", os.path.join(ROOT, "models"), "--configs", config, "--devices", device, "--iters", str(iters), "--matmul", "0", *extra],
                         capture_output=True, text=True, check=True).stdout
    cols = out.strip().splitlines()[-1].split()
    return float(cols[-3]), float(cols[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--configs", default="minilm,smollm2")
    ap.add_argument("--variants", default="f32,blocks,blocks+ckpt", help="webpeft variants of the GGUF configs")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return torch_child(a.child, a.iters, a.threads)
    print(f"| workload | device | webpeft ms/step | PyTorch+PEFT ms/step | webpeft tokens/s | PyTorch tokens/s | webpeft peak RSS MiB | PyTorch peak RSS MiB | webpeft time / PyTorch time |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for config in a.configs.split(","):
        name, work, batch, seq = CONFIGS[config]
        r = subprocess.run([sys.executable, __file__, "--child", config, "--iters", str(a.iters), "--threads", str(a.threads)], capture_output=True, text=True, check=True)
        t = json.loads(r.stdout.strip().splitlines()[-1])
        variants = a.variants.split(",") if config in GGUF else ["f32"]
        for device in a.devices.split(","):
            for v in variants:
                ms, rss = webpeft_row(config, device, a.iters, VARIANTS[v] if config in GGUF else [])
                tok = batch * seq
                label = f"{name} {work}" + (f" [{v}]" if config in GGUF else "")
                print(f"| {label} | {device} | {ms:.1f} | {t['ms']:.1f} | {tok / ms * 1000:.0f} | {tok / t['ms'] * 1000:.0f} | {rss:.0f} | {t['rss']:.0f} | {ms / t['ms']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
