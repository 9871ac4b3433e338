#!/usr/bin/env python3
"""Forward-pass benchmark: webpeft next to PyTorch + transformers on the same
workloads, in one run, printing the ratio. A measurement, never a test.

    python scripts/bench_forward.py [--devices cpu,gpu] [--threads 2]

Needs torch and transformers (not needed by CI). Runs `webpeft bench forward`
(built by `npm start` / `npm test`) and the same workloads in PyTorch:
all-MiniLM-L6-v2 forward on a 16 x 64 batch, SmolLM2-135M (GGUF, dequantised
to f32 by both) prefill of 1 x 128 tokens, then greedy decode with a KV cache.
"""
import argparse
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/webpeft/target"))


def ids(batch, seq, vocab):
    # The same xorshift sequence webpeft's bench uses.
    x = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    rows = []
    for _ in range(batch):
        row = []
        for _ in range(seq):
            x ^= (x << 13) & mask
            x ^= x >> 7
            x ^= (x << 17) & mask
            row.append(1000 + x % (vocab - 2000))
        rows.append(row)
    return rows


def timed(fn, iters):
    fn()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) * 1000 / iters


def torch_rows(iters, decode_tokens, threads):
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    torch.set_num_threads(threads)
    rows = {}
    with torch.inference_mode():
        m = AutoModel.from_pretrained(os.path.join(ROOT, "models/all-MiniLM-L6-v2")).eval()
        x = torch.tensor(ids(16, 64, m.config.vocab_size))
        rows["forward 16x64"] = (timed(lambda: m(input_ids=x), iters), 16 * 64)
        m = AutoModelForCausalLM.from_pretrained(
            os.path.join(ROOT, "models"), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", dtype=torch.float32
        ).eval()
        x = torch.tensor(ids(1, 128, m.config.vocab_size))
        rows["prefill 1x128"] = (timed(lambda: m(input_ids=x), iters), 128)

        def decode():
            out = m(input_ids=x, use_cache=True)
            past, nxt = out.past_key_values, x[:, :1]
            start = time.perf_counter()
            for _ in range(decode_tokens):
                out = m(input_ids=nxt, past_key_values=past, use_cache=True)
                past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
            return (time.perf_counter() - start) * 1000

        decode()
        ms = sum(decode() for _ in range(iters)) / iters
        rows[f"decode {decode_tokens} tokens"] = (ms / decode_tokens, 1)
    return rows


def webpeft_rows(devices, iters, decode_tokens):
    out = subprocess.run(
        [os.path.join(TARGET, "release/webpeft"), "bench", "forward", "--models", os.path.join(ROOT, "models"),
         "--devices", devices, "--iters", str(iters), "--decode-tokens", str(decode_tokens)],
        check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 6:
            continue
        ms, tps = float(cols[-2]), float(cols[-1])
        device = [c for c in cols if c in ("cpu", "gpu")][0]
        work = " ".join(cols[cols.index(device) + 1:-2])
        rows[(device, work)] = (ms, tps)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="cpu")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--decode-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    ours = webpeft_rows(a.devices, a.iters, a.decode_tokens)
    ref = torch_rows(a.iters, a.decode_tokens, a.threads)
    print(f"{'workload':<20} {'device':<6} {'webpeft ms':>11} {'torch cpu ms':>13} {'webpeft tok/s':>14} {'torch tok/s':>12} {'torch/webpeft time':>19}")
    for (device, work), (ms, tps) in ours.items():
        rms, rtok = ref[work]
        print(f"{work:<20} {device:<6} {ms:>11.1f} {rms:>13.1f} {tps:>14.1f} {rtok / (rms / 1000):>12.1f} {rms / ms:>19.2f}")


if __name__ == "__main__":
    main()
