#!/usr/bin/env python3
"""The downloads of the page's whole flow (tests/flow/flow.test.mjs), read by their targets' own
readers. The flow test writes tests/out/flow/manifest.json; this checks, for each run:

- the PEFT zip: loaded as its README's Python snippet says (transformers + PEFT), it predicts the
  classes the page showed with the same probabilities, or, for the chat model, gives the page's
  greedy replies token for token, with the adapter on and off (`disable_adapter`);
- the GGUF LoRA: read with the `gguf` package (llama.cpp's Python reader): llama.cpp's adapter
  metadata and one lora_a/lora_b pair per adapted module, equal to the PEFT zip's values
  (tests/fixtures/check_gguf_lora.py); then llama.cpp itself (the llama-cpp-cffi wheel's CPU build)
  runs it on the GGUF base, fed the page's replies: their tokens' logits are transformers + PEFT's
  up to llama.cpp's 8-bit activation rounding, and its greedy choices up to that rounding, with
  the adapter on and off (tests/fixtures/llama_cpp_run.py);
- the GPU job: its own train.py (transformers' Trainer + PEFT, on the CPU here) resumes at the step
  the page paused at and its losses for the remaining steps are the page's own for those steps.

    python tests/flow_check.py [tests/out/flow/manifest.json]

Needs torch, transformers, peft, accelerate, gguf and llama-cpp-cffi (scripts/test-flow.sh installs them).
Exits non-zero on any mismatch.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile

import torch
from gguf import GGUFReader
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import check_gguf_lora  # noqa: E402

# Class probabilities: webpeft's wasm f32 against PyTorch's f32 on the same weights.
PROB_TOL = 1e-4
# Losses of the resumed steps: the same batches, adapter, optimiser state and learning rates, and
# no dropout on either side, so only float differences remain (summation order in burn's kernels
# against PyTorch's, and llama.cpp's dequantisation against transformers' for the GGUF base).
LOSS_TOL = 1e-3
# llama.cpp against transformers on the same Q4_1 GGUF, in logits: llama.cpp rounds the activations
# to 8 bits for its quantized matrix products (transformers and webpeft multiply the dequantized
# weights in f32), which moved SmolLM2-135M's logits of the flow's replies by up to 0.94 (the
# adapter moves them by 7-15); greedy choices may differ where two tokens are closer than that.
LLAMA_CPP_TOL = 1.5


def unzip(path, into):
    with zipfile.ZipFile(path) as z:
        z.extractall(into)
    return into


def readme_snippet(folder):
    """The Python block of the zip's README, as a person would copy it."""
    with open(os.path.join(folder, "README.md"), encoding="utf-8") as f:
        return re.search(r"```python\n(.*?)```", f.read(), re.S).group(1)


def check_classification(c, tmp):
    folder = unzip(os.path.join(ROOT, c["adapter"]), os.path.join(tmp, "cls-adapter"))
    base = json.load(open(os.path.join(folder, "adapter_config.json")))["base_model_name_or_path"]
    # The README says to put the base model's folder in place of its name.
    code = readme_snippet(folder).replace(f'"{base}"', repr(os.path.join(ROOT, c["model"]))).replace('"path/to/this/folder"', repr(folder))
    scope = {}
    exec(code, scope)
    model, tokenizer = scope["model"], scope["tokenizer"]
    labels = model.config.id2label
    worst = 0.0
    for p in c["predictions"]:
        with torch.no_grad():
            probs = model(**tokenizer(p["text"], return_tensors="pt")).logits.softmax(-1)[0]
        got = {labels[i]: probs[i].item() for i in range(len(probs))}
        assert set(got) == set(p["probs"]), (got, p["probs"])
        assert max(got, key=got.get) == p["label"], f'"{p["text"]}": PEFT says {max(got, key=got.get)}, the page {p["label"]}'
        worst = max(worst, *(abs(got[k] - v) for k, v in p["probs"].items()))
    assert worst <= PROB_TOL, f"class probabilities differ by {worst:.2e}"
    print(f"classification PEFT zip: README snippet loads it; {len(c['predictions'])} predictions as the page's, probabilities within {worst:.1e}")


def check_chat(c, tmp):
    folder = unzip(os.path.join(ROOT, c["adapter"]), os.path.join(tmp, "chat-adapter"))
    assert "PeftModel.from_pretrained" in readme_snippet(folder)
    gguf = os.path.join(ROOT, c["model"])
    kw = dict(gguf_file=os.path.basename(gguf))
    tokenizer = AutoTokenizer.from_pretrained(os.path.dirname(gguf), **kw)
    base = AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf), dtype=torch.float32, **kw)
    model = PeftModel.from_pretrained(base, folder).eval()
    replies = []  # per call: prompt ids, reply ids, and each reply token's logit with the adapter on and off
    for call in c["calls"]:
        assert call["temperature"] == 0, "the page's chat was greedy"
        ids = tokenizer.apply_chat_template(call["messages"], add_generation_prompt=True, return_tensors="pt", return_dict=True)
        gen = dict(max_new_tokens=call["maxNewTokens"], do_sample=False, pad_token_id=tokenizer.eos_token_id)
        with torch.no_grad():
            if call["adapter"]:
                out = model.generate(**ids, **gen)
            else:
                with model.disable_adapter():
                    out = model.generate(**ids, **gen)
        n = ids["input_ids"].shape[1]
        text = tokenizer.decode(out[0, n:], skip_special_tokens=True)
        side = "adapted" if call["adapter"] else "base"
        assert text.strip() == call["text"].strip(), f"{side} reply to {call['messages'][-1]['content']!r}: transformers+PEFT {text!r}, the page {call['text']!r}"
        print(f"chat {side:7} {call['messages'][-1]['content']!r} -> {text.strip()!r} (the page's)")
        # The reply's tokens (the page's text, as transformers generated it) and their logits.
        reply = out[0, n:].tolist()
        with torch.no_grad():
            on = model(out).logits[0, n - 1 : -1]
            with model.disable_adapter():
                off = model(out).logits[0, n - 1 : -1]
        pick = lambda lg: lg.gather(1, out[0, n:, None])[:, 0].tolist()  # noqa: E731
        replies.append(dict(prompt=ids["input_ids"][0].tolist(), reply=reply, on=pick(on), off=pick(off)))
    print(f"chat PEFT zip: {len(c['calls'])} greedy replies, with the adapter on and off, are the page's")

    r = GGUFReader(gguf)
    arch = check_gguf_lora.field(r, "general.architecture")
    check_gguf_lora.main(os.path.join(ROOT, c["gguf"]), folder, check_gguf_lora.field(r, f"{arch}.attention.head_count"), check_gguf_lora.field(r, f"{arch}.attention.head_count_kv"))
    check_llama_cpp(c, replies, tokenizer, tmp)


def check_llama_cpp(c, replies, tokenizer, tmp):
    """llama.cpp itself runs the GGUF LoRA on the GGUF base (tests/fixtures/llama_cpp_run.py), fed
    each page reply's tokens after its prompt: each token's logit is transformers + PEFT's within
    LLAMA_CPP_TOL, with the adapter on and off, and is within LLAMA_CPP_TOL of llama.cpp's largest
    (the page's greedy choice is llama.cpp's, up to its rounding). With the adapter, llama.cpp's
    logits are nearer PEFT's adapted ones than its base ones, so the adapter is applied."""
    reqs = [dict(ids=r["prompt"], adapter=call["adapter"], max_new_tokens=call["maxNewTokens"], forced=r["reply"]) for call, r in zip(c["calls"], replies)]
    path = os.path.join(tmp, "llama-cpp-requests.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(reqs, f)
    env = dict(os.environ, LD_PRELOAD=os.environ.get("WEBPEFT_LLAMA_CPP_PRELOAD", ""))
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "fixtures", "llama_cpp_run.py"), os.path.join(ROOT, c["model"]), os.path.join(ROOT, c["gguf"]), path], capture_output=True, text=True, env=env)
    if run.returncode != 0:
        sys.exit(f"llama.cpp run failed:\n{run.stderr[-3000:]}")
    results = json.loads(run.stdout.strip().splitlines()[-1])
    same = 0
    worst_gap = worst_diff = 0.0
    for call, r, res in zip(c["calls"], replies, results):
        side = "adapted" if call["adapter"] else "base"
        text = tokenizer.decode(res["greedy"], skip_special_tokens=True)
        same += text.strip() == call["text"].strip()
        llama = [lt for _, lt in res["forced"]]
        want = r["on"] if call["adapter"] else r["off"]
        gap = max(mx - lt for mx, lt in res["forced"])
        diff = max(abs(a - b) for a, b in zip(llama, want))
        worst_gap, worst_diff = max(worst_gap, gap), max(worst_diff, diff)
        effect = max(abs(a - b) for a, b in zip(r["on"], r["off"]))
        print(f"llama.cpp {side:7} {call['messages'][-1]['content']!r} -> {text.strip()!r}; the page's tokens' logits within {diff:.2f} of PEFT's "
              f"(the adapter moves them by up to {effect:.2f}), within {gap:.2f} of llama.cpp's largest")
        assert diff <= LLAMA_CPP_TOL, f"llama.cpp, {side}: the logits of the page's reply {call['text']!r} differ from transformers + PEFT's by {diff:.2f}"
        assert gap <= LLAMA_CPP_TOL, f"llama.cpp, {side}: a token of the page's reply {call['text']!r} is {gap:.2f} below llama.cpp's largest logit"
        if call["adapter"]:
            near = lambda ref: sum(abs(a - b) for a, b in zip(llama, ref))  # noqa: E731
            assert near(r["on"]) < near(r["off"]), f"llama.cpp with the adapter is nearer the base model than the adapted one on {call['text']!r}: is the adapter applied?"
    print(f"llama.cpp GGUF LoRA: the page's reply tokens within {worst_diff:.2f} of PEFT's logits and {worst_gap:.2f} of llama.cpp's largest, "
          f"adapter on and off; {same} of {len(results)} llama.cpp greedy replies are the page's word for word")


def check_gpu_job(name, c, tmp):
    job = os.path.join(unzip(os.path.join(ROOT, c["gpuJob"]), os.path.join(tmp, f"{name}-job")), "webpeft-job")
    r = subprocess.run([sys.executable, "train.py", "--base-model", os.path.join(ROOT, c["model"]), "--output-dir", os.path.join(tmp, f"{name}-out")], cwd=job, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{name} GPU job's train.py failed:\n{r.stderr[-3000:]}")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    page = {int(k): v for k, v in c["losses"].items()}
    assert got["resumed_at"] == c["pausedAt"], got
    assert got["steps"] == list(range(c["pausedAt"] + 1, c["steps"] + 1)), got
    worst = max(abs(l - page[s]) / abs(page[s]) for s, l in zip(got["steps"], got["losses"]))
    print(f"{name} GPU job: train.py resumed at step {got['resumed_at']}, steps {got['steps'][0]}-{got['steps'][-1]} within {worst:.1e} relative of the page's losses")
    assert worst <= LOSS_TOL, f"{name}: Trainer {got['losses']} against the page's {[page[s] for s in got['steps']]}"


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "out", "flow", "manifest.json")
    with open(path, encoding="utf-8") as f:
        m = json.load(f)
    for part in ("classification", "chat"):
        for key in ("adapter", "gpuJob", "losses"):
            assert m.get(part, {}).get(key), f"{path}: the flow test recorded no {part} {key} (did it pass?)"
        for key in ("adapter", "gpuJob"):
            m[part][key] = os.path.relpath(m[part][key], ROOT)
    m["chat"]["gguf"] = os.path.relpath(m["chat"]["gguf"], ROOT)
    with tempfile.TemporaryDirectory(prefix="webpeft-flow-") as tmp:
        check_classification(m["classification"], tmp)
        check_chat(m["chat"], tmp)
        check_gpu_job("classification", m["classification"], tmp)
        check_gpu_job("chat", m["chat"], tmp)
    print("all three exports read back by their targets")


if __name__ == "__main__":
    main()
