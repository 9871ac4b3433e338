#!/usr/bin/env python3
"""Writes the fuzz corpus seeds (fuzz/seeds/<target>/) from the committed test fixtures.

Seeds stay small (a few KB): GGUF models are rebuilt shrunk (one layer, hidden 32, the tiny
fixtures' tokenizer metadata kept), safetensors files are the small PEFT adapters or written
here. Deterministic; run from anywhere: python3 scripts/fuzz-seeds.py
"""
import json, os, random, struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(ROOT, "fuzz", "seeds")
SEP = b"\n--8<--\n"  # fuzz/fuzz_targets/common.rs
rng = random.Random(12)


def read(*p):
    with open(os.path.join(FIX, *p), "rb") as f:
        return f.read()


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- GGUF -----------------------------------------------------------------------------
def gguf_read_meta(b):
    """(list of (key, type, raw value bytes)) of a GGUF file's metadata."""
    p = 0
    def u32():
        nonlocal p; v = struct.unpack_from("<I", b, p)[0]; p += 4; return v
    def u64():
        nonlocal p; v = struct.unpack_from("<Q", b, p)[0]; p += 8; return v
    size = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    def skip(t):
        nonlocal p
        if t in size: p += size[t]
        elif t == 8: n = u64(); p += n
        elif t == 9:
            et = u32(); n = u64()
            for _ in range(n): skip(et)
    u32(); u32(); u64(); nkv = u64()
    out = []
    for _ in range(nkv):
        n = u64(); k = b[p:p + n].decode(); p += n
        t = u32(); s = p; skip(t); out.append((k, t, b[s:p]))
    return out


def gstr(s):
    s = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(s)) + s


BLOCK = {0: (1, 4), 1: (1, 2), 30: (1, 2), 8: (32, 34), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
         12: (256, 144), 13: (256, 176), 14: (256, 210)}


def tensor_bytes(ty, n):
    per, size = BLOCK[ty]
    if ty == 0:
        return struct.pack(f"<{n}f", *[rng.uniform(-0.5, 0.5) for _ in range(n)])
    if ty == 1:
        return struct.pack(f"<{n}e", *[rng.uniform(-0.5, 0.5) for _ in range(n)])
    if ty == 30:
        return b"".join(struct.pack("<f", rng.uniform(-0.5, 0.5))[2:] for _ in range(n))
    out = bytearray()
    for _ in range(n // per):
        blk = bytearray(rng.randrange(256) for _ in range(size))
        blk[0:2] = struct.pack("<e", 0.01)  # a sane scale (d) first
        if ty in (12, 13, 14):
            blk[0:4] = struct.pack("<ee", 0.01, 0.001) if ty != 14 else blk[0:4]
            if ty == 14:
                blk[-2:] = struct.pack("<e", 0.01)
        out += blk
    return bytes(out)


def gguf(meta, tensors, alignment=32):
    """meta: [(key, type, raw)], tensors: [(name, dims (ne0 first), type)]."""
    head = struct.pack("<IIQQ", 0x46554747, 3, len(tensors), len(meta))
    for k, t, raw in meta:
        head += gstr(k) + struct.pack("<I", t) + raw
    data = b""
    table = b""
    for name, dims, ty in tensors:
        n = 1
        for d in dims: n *= d
        table += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        table += struct.pack("<IQ", ty, len(data))
        data += tensor_bytes(ty, n)
        data += b"\0" * (-len(data) % alignment)
    out = head + table
    out += b"\0" * (-len(out) % alignment)
    return out + data


def u32v(v): return struct.pack("<I", v)


def tiny_gguf(arch):
    src = read("gguf", "tiny-llama", "model.gguf")
    h, ff, heads, kv, hd = 32, 32, 2, 1, 16
    over = {"general.architecture": (8, gstr(arch)), "block_count": (4, u32v(1)), "context_length": (4, u32v(64)),
            "embedding_length": (4, u32v(h)), "feed_forward_length": (4, u32v(ff)),
            "attention.head_count": (4, u32v(heads)), "attention.head_count_kv": (4, u32v(kv)),
            "rope.dimension_count": (4, u32v(hd))}
    meta = []
    for k, t, raw in gguf_read_meta(src):
        short = k.split(".", 1)[1] if k.startswith("llama.") else k
        if k.startswith("llama."):
            k = arch + "." + short
        if short in over:
            t, raw = over[short]
        meta.append((k, t, raw))
    if arch == "qwen3":
        meta.append((f"{arch}.attention.key_length", 4, u32v(hd)))
    vocab = 320
    ts = [("token_embd.weight", [h, vocab], 2)]
    L = "blk.0."
    ts += [(L + "attn_q.weight", [h, heads * hd], 8), (L + "attn_k.weight", [h, kv * hd], 3),
           (L + "attn_v.weight", [h, kv * hd], 6), (L + "attn_output.weight", [heads * hd, h], 7),
           (L + "ffn_gate.weight", [h, ff], 1), (L + "ffn_up.weight", [h, ff], 30),
           (L + "ffn_down.weight", [ff, h], 8), (L + "attn_norm.weight", [h], 0), (L + "ffn_norm.weight", [h], 0)]
    if arch == "qwen2":
        ts += [(L + "attn_q.bias", [heads * hd], 0), (L + "attn_k.bias", [kv * hd], 0), (L + "attn_v.bias", [kv * hd], 0)]
    if arch == "qwen3":
        ts += [(L + "attn_q_norm.weight", [hd], 0), (L + "attn_k_norm.weight", [hd], 0)]
    ts += [("output_norm.weight", [h], 0)]
    if arch == "llama":
        ts += [("output.weight", [h, vocab], 2)]  # untied; no rope_freqs (it must match llama3 scaling)
    return gguf(meta, ts)


for arch in ("llama", "qwen2", "qwen3"):
    write("gguf", f"tiny-{arch}.gguf", tiny_gguf(arch))
# Every tensor type and metadata value type (the dequantisation paths), 256 values each.
syn = read("gguf", "synthetic.gguf")
syn_tensors = [(f"t{ty}.weight", [256, 1], ty) for ty in BLOCK]
write("gguf", "all-types.gguf", gguf(gguf_read_meta(syn), syn_tensors, alignment=64))


# --- safetensors ----------------------------------------------------------------------
def safetensors(tensors, metadata=None):
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(n): return struct.pack(f"<{n}f", *[rng.uniform(-1, 1) for _ in range(n)])


st_mixed = safetensors([("a.weight", "F32", [2, 3], f32(6)), ("b.weight", "F16", [4], struct.pack("<4e", 1, -2, 0.5, 3)),
                        ("c.bias", "BF16", [2], struct.pack("<f", 1.5)[2:] + struct.pack("<f", -1)[2:]),
                        ("d", "I64", [1], struct.pack("<q", 7)), ("e", "F32", [0], b"")], {"format": "pt"})
write("safetensors", "mixed.safetensors", st_mixed)
write("safetensors", "lora.safetensors", read("peft", "llama-lora", "adapter_model.safetensors"))
write("safetensors", "index.json", read("tiny-llama-sharded", "model.safetensors.index.json"))

# --- tokenizer -----------------------------------------------------------------------
tok_cfg = json.dumps({"bos_token": "<s>", "eos_token": {"content": "</s>"}, "chat_template":
                      "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] | trim }}{{ eos_token }}\n{% endfor %}"
                      "{% if add_generation_prompt %}<|assistant|>{% endif %}"}).encode()
text = "Hello wörld, 123!\n".encode()
# The tiny fixtures share one byte-level BPE tokenizer.json.
write("tokenizer", "byte-level-bpe", read("tiny-llama", "tokenizer.json") + SEP + tok_cfg + SEP + text)
vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "##s", ",", "!", "1", "##2", "##3"])}
wordpiece = {"version": "1.0", "truncation": {"max_length": 8, "strategy": "LongestFirst", "stride": 0, "direction": "Right"},
             "padding": None,
             "added_tokens": [{"id": 0, "content": "[PAD]", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}],
             "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True, "strip_accents": None, "lowercase": True},
             "pre_tokenizer": {"type": "BertPreTokenizer"},
             "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                                "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                                "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}, "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
             "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
             "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab}}
write("tokenizer", "wordpiece", json.dumps(wordpiece).encode() + SEP + b'{"chat_template": [{"name": "default", "template": "{{ messages[0].content }}"}]}' + SEP + text)

# --- data ----------------------------------------------------------------------------
# First byte: the file name (0 .jsonl, 1 .csv, 2 .txt, 3 .json, 4 none), second: task (bit 0) and seq_len (>> 1).
for fname, name_i, opts in [("prompt_completion.jsonl", 0, 32 << 1), ("reviews.csv", 1, (24 << 1) | 1),
                            ("three_labels.csv", 1, (16 << 1) | 1), ("bad_line.jsonl", 0, 16 << 1)]:
    write("data", fname, bytes([name_i, opts]) + read("data", fname))
extra = {
    "text.jsonl": (0, 16 << 1, b'{"text": "one two three"}\n{"text": "four five"}\n'),
    "label.jsonl": (0, (16 << 1) | 1, b'{"text": "good", "label": "pos"}\n{"text": "bad", "label": 0}\n'),
    "messages.jsonl": (0, 120 << 1, json.dumps({"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
                                                             {"role": "assistant", "content": "Hello!"}]}).encode() + b"\n"),
    "quoted.csv": (1, (16 << 1) | 1, b'text,label\n"a, ""quoted"" row",1\n"multi\nline",0\n'),
    "blocks.txt": (2, 8 << 1, b"The quick brown fox jumps over the lazy dog.\n\nAnother paragraph.\n"),
}
for fname, (name_i, opts, body) in extra.items():
    write("data", fname, bytes([name_i, opts]) + body)

# --- adapter -------------------------------------------------------------------------
# First byte: the model (0 tiny-llama, 1 tiny-gpt2, 2 tiny-bert).
for i, fam in enumerate(("llama", "gpt2", "bert")):
    for method in ("lora", "ia3", "prompt", "prefix", "dora"):
        d = os.path.join(FIX, "peft", f"{fam}-{method}")
        if not os.path.isdir(d):
            continue
        w = read("peft", f"{fam}-{method}", "adapter_model.safetensors")
        if len(w) > 12000:
            continue
        write("adapter", f"{fam}-{method}", bytes([i]) + read("peft", f"{fam}-{method}", "adapter_config.json") + SEP + w
              + SEP + b'{"task":"causal-lm","labels":["neg","pos"]}')

# --- model ---------------------------------------------------------------------------
for i, name in enumerate(("tiny-llama", "tiny-gpt2", "tiny-bert")):
    write("model", name, bytes([i]) + read(name, "config.json"))
