// Families added in issue #10, through the npm package in the browser: the tiny Gemma 3 GGUF
// (SentencePiece vocabulary, sliding and global layers) gives transformers' logits and token ids
// on WebGPU and on the wasm CPU backend, with nothing in the package or page naming the family.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { openTestPage, requireBuild, helper, inPageOf, maxAbsDiff, readSafetensors, ROOT } from "./harness.mjs";

const DIR = "tests/fixtures/gguf/tiny-gemma3";
let b;
let wp;

before(async () => {
  requireBuild();
  b = await openTestPage();
  wp = helper(b.page);
});
after(async () => {
  await b?.close();
});

/** Runs f(tuner, arg) in the page (harness.inPageOf). */
const inPage = (f, arg) => inPageOf(b.page)(f, arg);

test("Gemma 3 GGUF with a SentencePiece vocabulary: transformers' logits and token ids on WebGPU and the wasm CPU backend", { timeout: 20 * 60_000 }, async () => {
  const ref = readSafetensors(readFileSync(join(ROOT, DIR, "reference.safetensors")));
  const want = JSON.parse(readFileSync(join(ROOT, DIR, "tokenizer.json"), "utf8"));
  const ids = ref.input_ids.data;
  assert.equal(ids.length, 12);
  for (const backend of ["webgpu", "cpu"]) {
    const loaded = await wp("load", [`/${DIR}/model.gguf`], { backend });
    assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
    const info = await inPage((t) => t.info);
    assert.equal(info.error, undefined, JSON.stringify(info.error));
    assert.equal(JSON.stringify(info.value).includes("Gemma3ForCausalLM"), true, JSON.stringify(info.value));
    const out = await inPage((t, x) => t.forward(x), ids);
    assert.equal(out.error, undefined, JSON.stringify(out.error));
    assert.equal(out.value.length, ref.logits.data.length);
    const diff = maxAbsDiff(out.value, ref.logits.data);
    assert.ok(diff <= 1e-4, `${backend}: max |logits - transformers'| = ${diff}`);
    for (const c of want.cases) {
      const got = await inPage((t, x) => t.tokenize(x), c.text);
      assert.equal(got.error, undefined, JSON.stringify(got.error));
      assert.deepEqual(got.value, c.ids, `${backend}: tokenize(${JSON.stringify(c.text)})`);
    }
  }
});

/**
 * Loads a tiny model directory through the package on WebGPU and on the wasm CPU backend, as a
 * person loads a directory's files: it must report `architecture` and give `length` logits
 * (default: as many as the reference has) within 1e-4 of transformers'.
 */
async function checkDirectoryLogits(dir, architecture, length) {
  const ref = readSafetensors(readFileSync(join(ROOT, dir, "reference.safetensors")));
  const ids = ref.input_ids.data;
  for (const backend of ["webgpu", "cpu"]) {
    const loaded = await wp("load", ["config.json", "tokenizer.json", "model.safetensors"].map((f) => `/${dir}/${f}`), { backend });
    assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
    const info = await inPage((t) => t.info);
    assert.equal(info.value.architecture, architecture, JSON.stringify(info.value));
    const out = await inPage((t, x) => t.forward(x), ids);
    assert.equal(out.error, undefined, JSON.stringify(out.error));
    assert.equal(out.value.length, length ?? ref.logits.data.length);
    const diff = maxAbsDiff(out.value, ref.logits.data);
    assert.ok(diff <= 1e-4, `${backend}: max |logits - transformers'| = ${diff}`);
  }
}

// RoBERTa through the package, as a person loads a directory's files: the class logits of
// transformers' RobertaForSequenceClassification on both backends (positions after the padding id).
test("RoBERTa from safetensors: transformers' class logits on WebGPU and the wasm CPU backend", { timeout: 20 * 60_000 }, async () => {
  await checkDirectoryLogits("tests/fixtures/tiny-roberta", "RobertaForSequenceClassification", 3);
});

// Phi-3 through the package (fused qkv/gate_up, partial rotary, LongRoPE, sliding window): the
// whole pass's logits, which use LongRoPE's long factors, on both backends.
test("Phi-3 from safetensors: transformers' logits on WebGPU and the wasm CPU backend", { timeout: 20 * 60_000 }, async () => {
  await checkDirectoryLogits("tests/fixtures/tiny-phi3", "Phi3ForCausalLM");
});

// ModernBERT through the package: local and global layers, mean pooling and the prediction head.
test("ModernBERT from safetensors: transformers' class logits on WebGPU and the wasm CPU backend", { timeout: 20 * 60_000 }, async () => {
  await checkDirectoryLogits("tests/fixtures/tiny-modernbert", "ModernBertForSequenceClassification", 3);
});

// QLoRA in the browser: the tiny Qwen2 GGUF's Q8_0, Q5_0 and Q5_1 matrices stay in their blocks
// (info.deviceBlocks) on WebGPU and on the wasm CPU backend; a LoRA step with gradient
// checkpointing gives the native CLI's loss, whose training matches PEFT (crate/tests/train_parity.rs).
test("LoRA on a block-quantized GGUF base, with gradient checkpointing: one step on WebGPU and the wasm CPU backend gives the native CLI's loss", { timeout: 20 * 60_000 }, async () => {
  const { execFileSync } = await import("node:child_process");
  const { WEBPEFT_BIN } = await import("./harness.mjs");
  const model = "tests/fixtures/gguf/tiny-qwen2/model.gguf";
  const data = "tests/fixtures/data/prompt_completion.jsonl";
  const opts = { task: "causal-lm", method: "lora", steps: 1, batch: 4, seqLen: 32, lr: 1e-2, seed: 0, shuffle: false, gradientCheckpointing: true };
  const out = execFileSync(WEBPEFT_BIN, ["train", model, "--data", data, "--task", "causal-lm", "--method", "lora", "--steps", "1", "--batch", "4", "--seq-len", "32", "--lr", "1e-2", "--seed", "0", "--no-shuffle", "--gradient-checkpointing", "--out", join(ROOT, "tests/out/qlora-cli")], { cwd: ROOT, encoding: "utf8" });
  const native = out.split("\n").filter((l) => l.includes('"event":"step"')).map((l) => JSON.parse(l).loss);
  assert.equal(native.length, 1, out);
  await b.page.setInputFiles("#data", join(ROOT, data));
  for (const backend of ["webgpu", "cpu"]) {
    const loaded = await wp("load", [`/${model}`], { backend });
    assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
    assert.deepEqual(loaded.info.deviceBlocks, ["Q5_0", "Q5_1", "Q8_0"], `${backend}: ${JSON.stringify(loaded.info)}`);
    const started = await wp("startTrain", opts);
    assert.equal(started.error, undefined, JSON.stringify(started.error));
    const r = await wp("waitTrain");
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    const losses = r.events.filter((e) => e.event === "step").map((e) => e.loss);
    assert.equal(losses.length, 1);
    assert.ok(Math.abs(losses[0] - native[0]) <= 1e-4 * Math.abs(native[0]), `${backend}: loss ${losses[0]} vs native ${native[0]}`);
  }
  // The trained LoRA as llama.cpp's GGUF LoRA: the same bytes the CLI writes for the exported
  // PEFT adapter (crate/tests/gguf_lora.rs checks those against PEFT and llama.cpp's layout).
  const bytesOf = (f) => inPage(async (t, m) => Array.from(new Uint8Array(await (await t[m]()).arrayBuffer())), f);
  const gguf = await bytesOf("exportAdapterGguf");
  const zip = await bytesOf("exportAdapter");
  assert.equal(gguf.error ?? zip.error, undefined, JSON.stringify(gguf.error ?? zip.error));
  const { unzipTo, outDir } = await import("./harness.mjs");
  const dir = await outDir("qlora-gguf");
  await unzipTo(Buffer.from(zip.value), join(dir, "adapter"));
  execFileSync(WEBPEFT_BIN, ["export-gguf", model, "--adapter", join(dir, "adapter"), "--out", join(dir, "cli.gguf")], { cwd: ROOT });
  const cli = readFileSync(join(dir, "cli.gguf"));
  assert.equal(Buffer.from(gguf.value).toString("latin1", 0, 4), "GGUF");
  assert.ok(Buffer.from(gguf.value).equals(cli), `browser GGUF (${gguf.value.length} bytes) differs from the CLI's (${cli.length})`);
});
