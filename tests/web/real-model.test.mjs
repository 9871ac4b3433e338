// A real model in the browser: LoRA on all-MiniLM-L6-v2 (BERT, 22.7M parameters;
// fetched into models/ by scripts/setup.sh) for 3-class sequence classification
// on WebGPU, a few small steps (SwiftShader is slow), then classification and
// the exported adapter's logits against the native CLI; and SmolLM2 from one
// quantised .gguf file, its logits against the native CLI.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { openTestPage, modelUrls, requireBuild, helper, stepLosses, adapterParity, cliForward, maxAbsDiff, outDir, ROOT } from "./harness.mjs";

const MODEL = "models/all-MiniLM-L6-v2";
let b;
let wp;

before(async () => {
  requireBuild();
  assert.ok(existsSync(join(ROOT, MODEL, "model.safetensors")), `${MODEL} is missing: run bash scripts/setup.sh`);
  b = await openTestPage();
  wp = helper(b.page);
});
after(async () => {
  await b?.close();
});

// Both backends: on WebGPU this once found burn's fused GELU gradient turning NaN for
// MiniLM's activations (BERT now builds GELU from erf; see models/bert.rs).
test("MiniLM seq-cls LoRA, 3 steps on the CPU backend: finite losses, classify with the data's labels, CLI parity", { timeout: 30 * 60_000 }, async () => {
  await miniLm("cpu");
});

test("MiniLM seq-cls LoRA, 3 steps on WebGPU: finite losses, classify, CLI parity", { timeout: 30 * 60_000 }, async () => {
  // A fresh page: a page holds one model.
  await b.close();
  b = await openTestPage();
  wp = helper(b.page);
  await miniLm("webgpu");
});

async function miniLm(backend) {
  const loaded = await wp("load", modelUrls(MODEL, ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"]), { backend });
  assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
  assert.equal(loaded.device.backend, backend);
  assert.equal(loaded.info.modelType, "bert");
  assert.ok(loaded.info.numParameters > 20e6);

  await b.page.setInputFiles("#data", join(ROOT, "tests/fixtures/data/three_labels.csv"));
  const r = await wp("train", { task: "seq-cls", method: "lora", r: 8, alpha: 16, steps: 3, batch: 3, seqLen: 16, lr: 1e-3, seed: 0 });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  const losses = stepLosses(r.events);
  console.log(`MiniLM: losses ${losses.map((l) => l.toFixed(4)).join(", ")} in ${r.summary.elapsedS.toFixed(1)} s`);
  assert.equal(losses.length, 3);
  assert.ok(losses.every(Number.isFinite));
  const labels = r.events[0].labels;
  assert.ok(Array.isArray(labels) && labels.length === 3, `labels from the data: ${labels}`);

  const c = await wp("classify", ["the striker scored twice", "stocks fell sharply"]);
  assert.equal(c.error, undefined, JSON.stringify(c.error));
  assert.equal(c.length, 2);
  for (const row of c) {
    assert.ok(labels.includes(row.label), row.label);
    const total = Object.values(row.probs).reduce((s, p) => s + p, 0);
    assert.ok(Math.abs(total - 1) < 1e-4, `probabilities sum to 1: ${total}`);
  }

  // WebGPU (SwiftShader) against the native CPU backend over six layers: 1e-3.
  const p = await adapterParity(b.page, { name: `web-minilm-${backend}`, model: MODEL, tokens: [101, 1996, 11345, 3195, 102] });
  console.log(`MiniLM: browser vs native CLI logits, max abs diff ${p.maxDiff.toExponential(2)} over ${p.browser.length} values`);
  assert.equal(p.browser.length, 3);
  assert.ok(p.maxDiff <= 1e-3, `browser and CLI logits differ by ${p.maxDiff}`);
}

test("SmolLM2-135M as one Q4_1 .gguf file: loads on the CPU backend's threads and gives the native CLI's logits", { timeout: 30 * 60_000 }, async () => {
  const GGUF = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  assert.ok(existsSync(join(ROOT, GGUF)), `${GGUF} is missing: run bash scripts/setup.sh`);
  await b.close();
  b = await openTestPage();
  wp = helper(b.page);
  const loaded = await wp("load", [`/${GGUF}`], { backend: "cpu" });
  assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
  assert.equal(loaded.info.format, "gguf");
  assert.ok(loaded.info.dtypes.includes("Q4_1"), JSON.stringify(loaded.info.dtypes));
  assert.equal(loaded.info.hasChatTemplate, true);
  const tokens = [1, 9690, 28, 314, 2114];
  const browser = await wp("forward", tokens);
  assert.equal(browser.error, undefined, JSON.stringify(browser.error));
  const dir = await outDir("web-smollm2-gguf");
  const native = await cliForward(GGUF, null, tokens, join(dir, "native.safetensors"));
  const diff = maxAbsDiff(Float32Array.from(browser), native);
  console.log(`SmolLM2 GGUF: browser (${loaded.device.threads} threads) vs native CLI logits, max abs diff ${diff.toExponential(2)} over ${native.length} values`);
  assert.equal(browser.length, tokens.length * 49152);
  assert.ok(diff <= 1e-3, `browser and CLI logits differ by ${diff}`);
  // The model's own tokenizer and chat template work in the browser.
  const g = await wp("generate", "What is 2+2?", { chat: true, maxNewTokens: 4 });
  assert.equal(g.error, undefined, JSON.stringify(g.error));
  assert.ok(g.text.length > 0);
});
