// Backend choice: "cpu" trains on burn's Flex backend compiled to wasm, on a pool
// of worker threads where the page is cross-origin isolated; with WebGPU hidden
// from the page, "auto" falls back to the CPU backend and says why.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { openTestPage, modelUrls, requireBuild, helper, stepLosses, threadsBuild, ROOT } from "./harness.mjs";

const MODEL = modelUrls("tests/fixtures/tiny-llama");
const DATA = join(ROOT, "tests/fixtures/data/prompt_completion.jsonl");

async function trainsOn(b, wp, opts) {
  const loaded = await wp("load", MODEL, opts);
  assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
  await b.page.setInputFiles("#data", DATA);
  const r = await wp("train", { task: "causal-lm", method: "lora", steps: 3, lr: 1e-2, batch: 8, seqLen: 32 });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  const losses = stepLosses(r.events);
  assert.equal(losses.length, 3);
  assert.ok(losses.every(Number.isFinite));
  return loaded.device;
}

test("backend 'cpu' trains", { timeout: 10 * 60_000 }, async () => {
  requireBuild();
  const b = await openTestPage();
  try {
    const wp = helper(b.page);
    const device = await trainsOn(b, wp, { backend: "cpu" });
    assert.equal(device.backend, "cpu");
    assert.equal(device.notice, undefined);
    // The test page is cross-origin isolated: the threads build runs on every core.
    const cores = await b.page.evaluate(() => navigator.hardwareConcurrency);
    assert.equal(await b.page.evaluate(() => crossOriginIsolated), true);
    assert.equal(device.threads, threadsBuild() ? cores : 1, JSON.stringify(device));
    // Generation streams its text, with the adapter and without it.
    for (const adapter of [true, false]) {
      const g = await wp("generate", "Capital of France? ", { maxNewTokens: 6, adapter });
      assert.equal(g.error, undefined, JSON.stringify(g.error));
      assert.equal(g.tokens.join(""), g.text);
    }
  } finally {
    await b.close();
  }
});

test("the CPU backend's thread pool trains like one thread; without isolation it runs on one thread and says why", { timeout: 10 * 60_000 }, async (t) => {
  requireBuild();
  if (!threadsBuild()) return t.skip("web/dist has no threads build (scripts/build-web.sh could not get rust-src)");
  const losses = {};
  const b = await openTestPage();
  try {
    const wp = helper(b.page);
    const cores = await b.page.evaluate(() => navigator.hardwareConcurrency);
    assert.ok(cores >= 2, `this check needs 2 or more cores (navigator.hardwareConcurrency is ${cores})`);
    for (const threads of [1, cores]) {
      const loaded = await wp("load", MODEL, { backend: "cpu", threads });
      assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
      assert.equal(loaded.device.threads, threads, JSON.stringify(loaded.device));
      await b.page.setInputFiles("#data", DATA);
      const r = await wp("train", { task: "causal-lm", method: "lora", steps: 3, lr: 1e-2, batch: 8, seqLen: 32, seed: 3 });
      assert.equal(r.error, undefined, JSON.stringify(r.error));
      losses[threads] = stepLosses(r.events);
    }
    // Same data, seed and model: the pool only changes the order of float sums.
    losses[1].forEach((l, i) => assert.ok(Math.abs(l - losses[cores][i]) <= 1e-4 * Math.abs(l), `step ${i + 1}: ${l} (1 thread) vs ${losses[cores][i]} (${cores})`));
    const bad = await wp("load", MODEL, { backend: "cpu", threads: 0 });
    assert.equal(bad.error?.kind, "input", JSON.stringify(bad));
  } finally {
    await b.close();
  }
  const plain = await openTestPage({ isolated: false });
  try {
    assert.equal(await plain.page.evaluate(() => crossOriginIsolated), false);
    const loaded = await helper(plain.page)("load", MODEL, { backend: "cpu" });
    assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
    assert.equal(loaded.device.threads, 1);
    assert.match(loaded.device.notice ?? "", /not cross-origin isolated.*one thread/);
  } finally {
    await plain.close();
  }
});

test("without navigator.gpu, 'auto' uses the CPU backend with a notice", { timeout: 10 * 60_000 }, async () => {
  requireBuild();
  const b = await openTestPage({
    initScript: () => {
      delete Object.getPrototypeOf(navigator).gpu;
    },
  });
  try {
    assert.equal(await b.page.evaluate(() => "gpu" in navigator), false);
    const device = await trainsOn(b, helper(b.page), { backend: "auto" });
    assert.equal(device.backend, "cpu");
    assert.match(device.notice ?? "", /WebGPU unavailable/);
    // Asking for WebGPU outright is a typed 'device' error.
    const r = await helper(b.page)("load", MODEL, { backend: "webgpu" });
    assert.equal(r.error?.kind, "device");
  } finally {
    await b.close();
  }
});

test("with WebGPU present, the device reports the adapter", { timeout: 10 * 60_000 }, async () => {
  requireBuild();
  const b = await openTestPage();
  try {
    const r = await helper(b.page)("load", MODEL, { backend: "webgpu" });
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.equal(r.device.backend, "webgpu");
    assert.equal(typeof r.device.f16, "boolean");
    assert.equal(typeof r.device.subgroups, "boolean");
    assert.ok(r.device.maxBufferSize > 0);
    console.log("WebGPU device:", JSON.stringify(r.device));
    // On a software adapter, "auto" prefers the CPU backend and says so.
    const auto = await helper(b.page)("load", MODEL, { backend: "auto" });
    if (r.device.architecture === "swiftshader") {
      assert.equal(auto.device.backend, "cpu");
      assert.match(auto.device.notice, /software/);
    }
  } finally {
    await b.close();
  }
});

test("benchmark times training steps on a copy of the model and probes matmul speed", { timeout: 10 * 60_000 }, async () => {
  requireBuild();
  const b = await openTestPage();
  try {
    const wp = helper(b.page);
    assert.equal((await wp("load", MODEL, { backend: "cpu" })).error, undefined);
    const before = await wp("forward", [1, 2, 3, 4]);
    const r = await wp("benchmark", { batch: 2, seq: 16, steps: 2, matmulSize: 64 });
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.equal(r.backend, "cpu");
    assert.equal(r.task, "causal-lm", "a decoder's default task");
    assert.equal(r.stepMs.length, 2);
    for (const ms of [r.warmupMs, ...r.stepMs]) assert.ok(Number.isFinite(ms) && ms > 0, `step time ${ms}`);
    assert.ok(Math.abs(r.tokensPerSecond - (2 * 16) / (r.msPerStep / 1000)) < 1e-6 * r.tokensPerSecond);
    assert.equal(r.matmul.n, 64);
    assert.ok(Number.isFinite(r.matmul.gflops) && r.matmul.gflops > 0, JSON.stringify(r.matmul));
    // The benchmark trained a LoRA copy: the model itself is unchanged and has no adapter.
    assert.deepEqual(await wp("forward", [1, 2, 3, 4]), before);
    const files = await wp("exportFiles");
    assert.ok(files.error, "no adapter to export after a benchmark");
    // A sequence longer than the model's context, and a bad batch, are 'input' errors.
    const long = await wp("benchmark", { seq: 100_000, steps: 1, matmulSize: 0 });
    assert.equal(long.error?.kind, "input", JSON.stringify(long));
    assert.match(long.error.message, /context/);
    const bad = await wp("benchmark", { batch: 0 });
    assert.equal(bad.error?.kind, "input", JSON.stringify(bad));
  } finally {
    await b.close();
  }
});
