// The memory plan in the browser (Tuner.plan, and Tuner.load's check before
// downloading): over HTTP it reads only the files' headers with Range requests
// (the server counts the bytes it sends), and a model or job that cannot fit
// is refused with a typed "device" error before the weights are downloaded.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { openTestPage, modelUrls, requireBuild, helper, ROOT } from "./harness.mjs";

const MODEL = modelUrls("tests/fixtures/tiny-llama");
const SMOLLM2 = "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
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

/** Bytes the server sent for `path` since the last reset, and whether all of it was ranged. */
function served(path) {
  const rows = b.server.served.filter((r) => r.path === path);
  return { bytes: rows.reduce((s, r) => s + r.bytes, 0), requests: rows.length, allRanged: rows.every((r) => r.range) };
}

test("Tuner.plan reads only the safetensors header over HTTP Range and matches the loaded model", { timeout: 5 * 60_000 }, async () => {
  b.server.served.length = 0;
  const r = await wp("plan", { urls: MODEL }, { task: "causal-lm", method: "lora", batch: 8, seqLen: 32 });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  const p = r.plan;
  assert.equal(p.fits, true, JSON.stringify(p));
  const st = served("/tests/fixtures/tiny-llama/model.safetensors");
  // First 8 bytes, then the header: far less than the file (about 330 kB).
  assert.equal(st.allRanged, true, JSON.stringify(b.server.served));
  assert.equal(st.requests, 2, JSON.stringify(b.server.served));
  assert.ok(st.bytes < 5_000, `served ${st.bytes} bytes of model.safetensors`);
  assert.equal(served("/tests/fixtures/tiny-llama/tokenizer.json").requests, 0, "the tokenizer is not needed");
  assert.equal(p.weights.deviceDtype, "F32");
  assert.deepEqual(p.training.largestActivation.shape, [256, 320]); // one chunk of the loss's rows
  // The plan's values equal what loading reports.
  const loaded = await wp("load", MODEL, { backend: "cpu" });
  assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
  assert.equal(p.weights.parameters, loaded.info.numParameters);
  assert.equal(p.weights.deviceBytes, loaded.info.numParameters * 4);
});

test("a job above the binding limit: fits is false with a typed error saying what fits", { timeout: 5 * 60_000 }, async () => {
  // Local files this time (Blob.slice / bytes instead of Range requests).
  const r = await wp("plan", { files: MODEL }, { task: "causal-lm", method: "lora", batch: 8, seqLen: 32 }, { backend: "webgpu", maxTensorBytes: 100_000 });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  const p = r.plan;
  assert.equal(p.fits, false);
  assert.equal(p.limits.deviceIsHost, false);
  assert.equal(p.error.kind, "device");
  assert.match(p.error.message, /token logits \(one chunk of rows\) \[256, 320\].*what fits: batch 2 .*seq_len 9/);
});

test("a model above the memory limit is refused with a 'device' error before its weights are downloaded", { timeout: 5 * 60_000 }, async () => {
  b.server.served.length = 0;
  const r = await wp("load", MODEL, { backend: "cpu", maxBytes: 100_000 });
  assert.equal(r.error?.kind, "device", JSON.stringify(r));
  assert.equal(r.error.isWebPeftError, true);
  assert.match(r.error.message, /above the maxBytes limit of 0\.1 MB \(100000 bytes\)/);
  assert.match(r.error.message, /quantize/);
  const st = served("/tests/fixtures/tiny-llama/model.safetensors");
  assert.equal(st.allRanged, true, `model.safetensors was downloaded: ${JSON.stringify(b.server.served)}`);
  assert.ok(st.bytes < 5_000, `served ${st.bytes} bytes`);
  assert.equal(await wp("alive"), 2);
});

test("SmolLM2's GGUF (98 MB, 540 MB as f32): its Q4_1 blocks are planned as kept (112 MB); with quantize \"f32\" it is refused under a 500 MB limit before download", { timeout: 5 * 60_000 }, async (t) => {
  if (!existsSync(join(ROOT, SMOLLM2))) return t.skip("models/ is not fetched (scripts/fetch-models.sh)");
  b.server.served.length = 0;
  const train = { task: "causal-lm", method: "lora", batch: 4, seqLen: 128 };
  const q = await wp("plan", { urls: [SMOLLM2] }, train);
  assert.equal(q.error, undefined, JSON.stringify(q.error));
  const p = q.plan;
  assert.ok(p.weights.storedDtypes.includes("Q4_1"), JSON.stringify(p.weights));
  assert.equal(p.weights.deviceDtype, "F32+Q4_1+Q8_0");
  assert.ok(p.weights.deviceBytes < 150e6, JSON.stringify(p.weights));
  assert.deepEqual(p.training.largestActivation.shape, [85, 49152]); // not [4, 128, 49152]: the loss is chunked
  let st = served(SMOLLM2);
  assert.equal(st.allRanged, true);
  assert.ok(st.bytes < 8 << 20, `served ${st.bytes} bytes of the GGUF for its header`);
  // quantize "f32" widens every weight: 540 MB.
  const wide = (await wp("plan", { urls: [SMOLLM2] }, train, { quantize: "f32" })).plan;
  assert.equal(wide.weights.deviceDtype, "F32");
  assert.ok(wide.weights.deviceBytes > 500e6, JSON.stringify(wide.weights));
  const bad = await wp("plan", { urls: [SMOLLM2] }, train, { quantize: "q3_k" });
  assert.equal(bad.error?.kind, "input", JSON.stringify(bad));
  b.server.served.length = 0;
  const r = await wp("load", [SMOLLM2], { backend: "cpu", maxBytes: 500_000_000, quantize: "f32" });
  assert.equal(r.error?.kind, "device", JSON.stringify(r));
  assert.match(r.error.message, /weights as held \(F32/);
  st = served(SMOLLM2);
  assert.equal(st.allRanged, true, "the GGUF was not downloaded");
  assert.ok(st.bytes < 8 << 20, `served ${st.bytes} bytes`);
});
