// Bad input in the browser is a typed WebPeftError, and the tab lives on:
// a truncated model file (kind "format"), a malformed dataset line (kind
// "input", line 2), and a model larger than the device allows (kind "device"):
// in all, or in one weight above the largest buffer the device can bind.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { openTestPage, modelUrls, requireBuild, helper, stepLosses, ROOT } from "./harness.mjs";

const MODEL = modelUrls("tests/fixtures/tiny-llama");
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

test("a truncated model.safetensors is a 'format' error naming the file; the tab lives", { timeout: 5 * 60_000 }, async () => {
  for (const truncate of [4, 100, 5000]) {
    const r = await wp("loadBytes", MODEL, { backend: "cpu", truncate });
    assert.ok(r.error, `truncated to ${truncate} bytes: an error`);
    assert.equal(r.error.isWebPeftError, true);
    assert.equal(r.error.kind, "format", JSON.stringify(r.error));
    assert.match(r.error.message, /model\.safetensors/);
    assert.equal(await wp("alive"), 2);
  }
  // And a good model still loads in the same tab.
  const ok = await wp("loadBytes", MODEL, { backend: "cpu" });
  assert.equal(ok.error, undefined, JSON.stringify(ok.error));
});

test("a malformed dataset line is an 'input' error with line 2", { timeout: 5 * 60_000 }, async () => {
  assert.equal((await wp("load", MODEL, { backend: "cpu" })).error, undefined);
  await b.page.setInputFiles("#data", join(ROOT, "tests/fixtures/data/bad_line.jsonl"));
  const s = await wp("startTrain", { task: "causal-lm", method: "lora", steps: 2 });
  const r = s.error ? s : await wp("waitTrain");
  assert.ok(r.error, "an error");
  assert.equal(r.error.isWebPeftError, true);
  assert.equal(r.error.kind, "input", JSON.stringify(r.error));
  assert.equal(r.error.line, 2, JSON.stringify(r.error));
  assert.match(r.error.source ?? "", /bad_line\.jsonl/);
  assert.equal(await wp("alive"), 2);
  // The model is still usable.
  const f = await wp("forward", [1, 2, 3]);
  assert.equal(f.error, undefined, JSON.stringify(f.error));
});

test("a model above the device limit is a 'device' error naming the limit", { timeout: 5 * 60_000 }, async () => {
  const r = await wp("load", MODEL, { backend: "cpu", maxBytes: 1000 });
  assert.ok(r.error, "an error");
  assert.equal(r.error.kind, "device", JSON.stringify(r.error));
  assert.match(r.error.message, /limit/);
  assert.match(r.error.message, /1000 bytes/);
  assert.equal(await wp("alive"), 2);
});

test("a weight above the device's binding limit is a 'device' error naming the tensor", { timeout: 5 * 60_000 }, async () => {
  // tiny-llama's largest weights are [320, 64] f32 (81920 bytes). The default limit on
  // WebGPU is the adapter's maxStorageBufferBindingSize; here it is set low on purpose.
  const r = await wp("load", MODEL, { backend: "cpu", maxTensorBytes: 40_000 });
  assert.ok(r.error, "an error");
  assert.equal(r.error.kind, "device", JSON.stringify(r.error));
  assert.equal(r.error.source, "model.safetensors", JSON.stringify(r.error));
  assert.match(r.error.message, /tensor '(model\.embed_tokens|lm_head)\.weight' \[320, 64\]/);
  assert.match(r.error.message, /\(maxStorageBufferBindingSize\) of 0\.0 MB \(40000 bytes\)/);
  assert.equal(await wp("alive"), 2);
  const ok = await wp("load", MODEL, { backend: "cpu", maxTensorBytes: 81_920 });
  assert.equal(ok.error, undefined, JSON.stringify(ok.error));
});

test("a micro-batch whose activations exceed the binding limit is a 'device' error before training; a smaller one trains", { timeout: 5 * 60_000 }, async () => {
  // The weights fit (81920 bytes at most); 8 x 32 tokens of 320 logits (327680 bytes) do not.
  assert.equal((await wp("load", MODEL, { backend: "cpu", maxTensorBytes: 100_000 })).error, undefined);
  await b.page.setInputFiles("#data", join(ROOT, "tests/fixtures/data/prompt_completion.jsonl"));
  const big = await wp("train", { task: "causal-lm", method: "lora", steps: 1, batch: 8, seqLen: 32 });
  assert.equal(big.error?.kind, "device", JSON.stringify(big));
  assert.match(big.error.message, /token logits \[8, 32, 320\].*lower batch/);
  // The model is still loaded and usable: a smaller micro-batch trains.
  const small = await wp("train", { task: "causal-lm", method: "lora", steps: 2, batch: 1, seqLen: 16 });
  assert.equal(small.error, undefined, JSON.stringify(small.error));
  assert.equal(stepLosses(small.events).length, 2);
});

const TOKENS = [1, 5, 9, 17, 33];
const LM = { task: "causal-lm", method: "lora", steps: 2, batch: 4, seqLen: 32, lr: 1e-2, r: 4, schedule: "constant" };

test("a failed start leaves the model and its adapter as they were; training then works without a reload", { timeout: 5 * 60_000 }, async () => {
  assert.equal((await wp("load", MODEL, { backend: "cpu" })).error, undefined);
  await b.page.setInputFiles("#data", join(ROOT, "tests/fixtures/data/prompt_completion.jsonl"));
  const base = await wp("forward", TOKENS);
  // A trained adapter: the work a failed start must not lose.
  const first = await wp("train", LM);
  assert.equal(first.error, undefined, JSON.stringify(first.error));
  const trained = await wp("forward", TOKENS);
  assert.notDeepEqual(trained, base, "the trained adapter changes the logits");
  const cases = [
    ["seqLen above the context", { ...LM, seqLen: 100_000 }, "seqLen", /longer than the model's context length of 128/],
    ["an unknown method", { ...LM, method: "lorax" }, "method", /unknown variant `lorax`, expected one of `lora`, `dora`, `bitfit`, `ia3`, `prompt`, `prefix`/],
    ["an unknown schedule", { ...LM, schedule: "step" }, "schedule", /expected one of `constant`, `linear`, `cosine`/],
    ["virtual tokens past the context (after the new adapter exists)", { ...LM, method: "prompt", virtualTokens: 120, adapter: "new" }, "seqLen", /virtual tokens exceeds the context length/],
  ];
  for (const [what, options, source, message] of cases) {
    const r = await wp("train", options);
    assert.equal(r.error?.kind, "input", `${what}: ${JSON.stringify(r)}`);
    assert.equal(r.error.source, source, `${what}: ${JSON.stringify(r.error)}`);
    assert.match(r.error.message, message, what);
    assert.doesNotMatch(r.error.message, /reload/, what);
    const after = await wp("forward", TOKENS);
    assert.equal(after.error, undefined, `${what}: the model is gone: ${JSON.stringify(after.error)}`);
    assert.deepEqual(after, trained, `${what}: the logits changed after a failed start`);
  }
  // Then it trains without reloading: the same settings continue the adapter.
  const again = await wp("train", LM);
  assert.equal(again.error, undefined, JSON.stringify(again.error));
  assert.equal(stepLosses(again.events).length, 2);
  assert.equal(again.summary.adapter, "continue");
  assert.equal(again.events[0].adapter, "continue");
  assert.notDeepEqual(await wp("forward", TOKENS), trained, "the continued run trained the adapter");
});

test("adapter 'new' vs 'continue', and resetAdapter() returns to the base model", { timeout: 5 * 60_000 }, async () => {
  assert.equal((await wp("load", MODEL, { backend: "cpu" })).error, undefined);
  await b.page.setInputFiles("#data", join(ROOT, "tests/fixtures/data/prompt_completion.jsonl"));
  const base = await wp("forward", TOKENS);
  assert.equal((await wp("train", LM)).error, undefined);
  const trained = await wp("forward", TOKENS);
  assert.notDeepEqual(trained, base);
  // lr 0 leaves the starting adapter as it is, so the logits show which adapter a run trained:
  // the trained one (continue) or a new LoRA (B = 0: the base model's logits).
  const run = async (options, want) => {
    const r = await wp("train", { ...LM, lr: 0, ...options });
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.equal(r.summary.adapter, want, JSON.stringify(options));
    return { logits: await wp("forward", TOKENS), warnings: r.summary.warnings };
  };
  assert.deepEqual((await run({}, "continue")).logits, trained, "same settings: the trained adapter continues");
  assert.deepEqual((await run({ adapter: "continue", r: 8 }, "continue")).warnings.filter((w) => /r: 4 \(attached\) vs 8/.test(w)).length, 1);
  assert.deepEqual((await run({ r: 8 }, "new")).logits, base, "another r: a new adapter on the base model");
  // The adapter is now the new (r 8) one; an explicit "new" with the same settings replaces it again.
  assert.deepEqual((await run({ r: 8, adapter: "new" }, "new")).logits, base);
  assert.equal((await wp("train", { ...LM, steps: 1, r: 8 })).error, undefined);
  assert.notDeepEqual(await wp("forward", TOKENS), base);
  const reset = await wp("resetAdapter");
  assert.deepEqual(reset, { ok: true });
  assert.deepEqual(await wp("forward", TOKENS), base, "after resetAdapter() the logits are the base model's");
  const none = await wp("exportFiles");
  assert.equal(none.error?.kind, "input", JSON.stringify(none));
  const cont = await wp("train", { ...LM, adapter: "continue" });
  assert.equal(cont.error?.kind, "input", JSON.stringify(cont));
  assert.equal(cont.error.source, "adapter");
  assert.deepEqual(await wp("forward", TOKENS), base);
});
