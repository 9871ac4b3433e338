// QLoRA on 1.5B parameters in one Chromium tab, through the npm package (`npm run test:tab`):
// Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB; about 6 GB as f32) is planned from its header,
// loaded on the wasm CPU backend with its Q4_K/Q6_K matrices kept in blocks, and trains LoRA
// steps with gradient checkpointing. Prints the plan, the step times and the tab's memory
// (performance.measureUserAgentSpecificMemory, which counts the worker's wasm memory).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { openTestPage, requireBuild, helper, ROOT } from "../web/harness.mjs";

const MODEL = "models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";
let b;
let wp;

const memory = () =>
  b.page.evaluate(async () => {
    const m = await performance.measureUserAgentSpecificMemory();
    return { bytes: m.bytes, breakdown: m.breakdown.filter((x) => x.bytes > 1e6).map((x) => ({ bytes: x.bytes, types: x.types, scope: x.attribution.map((a) => a.scope) })) };
  });

test("LoRA trains on Qwen2.5-Coder-1.5B Q4_K_M in one tab (wasm CPU backend, blocks kept, gradient checkpointing)", { timeout: 90 * 60_000 }, async () => {
  assert.ok(existsSync(join(ROOT, MODEL)), "run scripts/fetch-models.sh --tab");
  requireBuild();
  b = await openTestPage();
  wp = helper(b.page);
  try {
    await run();
  } finally {
    await b.close();
  }
});

async function run() {
  const train = { task: "causal-lm", method: "lora", batch: 1, seqLen: 32, gradientCheckpointing: true };
  const q = await wp("plan", { urls: [`/${MODEL}`] }, train);
  assert.equal(q.error, undefined, JSON.stringify(q.error));
  const p = q.plan;
  assert.equal(p.fits, true, JSON.stringify(p.error));
  assert.equal(p.weights.deviceDtype, "F32+Q4_K+Q6_K");
  console.log(`plan: weights ${(p.weights.deviceBytes / 1e6).toFixed(0)} MB on the device, host while loading ${(p.hostLoadBytes / 1e6).toFixed(0)} MB, training total ${(p.deviceBytes / 1e6).toFixed(0)} MB`);
  const t0 = Date.now();
  const loaded = await wp("load", [`/${MODEL}`], { backend: "cpu" });
  assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
  assert.deepEqual(loaded.info.deviceBlocks, ["Q4_K", "Q6_K"]);
  assert.ok(loaded.info.numParameters > 1.5e9, String(loaded.info.numParameters));
  const loadSeconds = (Date.now() - t0) / 1000;
  console.log(`loaded in ${loadSeconds.toFixed(0)} s on ${loaded.device.backend} (${loaded.device.threads} threads); weights ${(loaded.info.weightBytes / 1e6).toFixed(0)} MB`);
  const afterLoad = await memory();
  console.log(`tab memory after load: ${(afterLoad.bytes / 1e6).toFixed(0)} MB`, JSON.stringify(afterLoad.breakdown));
  const rows = Array.from({ length: 4 }, (_, i) => ({ prompt: `def add_${i}(a, b):`, completion: `\n    return a + b + ${i}\n` }));
  const started = await wp("startTrainData", rows, { ...train, steps: 2, lr: 1e-4, seed: 0 });
  assert.equal(started.error, undefined, JSON.stringify(started.error));
  const r = await wp("waitTrain");
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  const steps = r.events.filter((e) => e.event === "step");
  assert.equal(steps.length, 2, JSON.stringify(r.events.slice(-3)));
  for (const s of steps) assert.ok(Number.isFinite(s.loss) && Number.isFinite(s.gradNorm) && s.gradNorm > 0, JSON.stringify(s));
  const afterTrain = await memory();
  const report = {
    model: MODEL,
    plan: { weightsBytes: p.weights.deviceBytes, hostLoadBytes: p.hostLoadBytes, deviceBytes: p.deviceBytes },
    loadSeconds,
    steps: steps.map((s) => ({ loss: s.loss, elapsedS: s.elapsedS })),
    memoryAfterLoad: afterLoad.bytes,
    memoryAfterTrain: afterTrain.bytes,
    breakdown: afterTrain.breakdown,
  };
  console.log(JSON.stringify(report, null, 2));
  mkdirSync(join(ROOT, "tests/out"), { recursive: true });
  writeFileSync(join(ROOT, "tests/out/tab-1.5b.json"), JSON.stringify(report, null, 2));
}
