// The package's own machinery against a mock core (tests/web/mock/webpeft.js,
// same exports as the wasm-bindgen output): the worker protocol, typed errors,
// streamed events and tokens, pause/resume/cancel, the device-size check,
// backend choice, and wasm traps surfacing as kind "crash" instead of a hung
// promise. Fast, and independent of the Rust build.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { buildMock, openTestPage, modelUrls, ROOT } from "./harness.mjs";
import { join } from "node:path";

const MODEL = modelUrls("tests/fixtures/tiny-llama");
let b;
let dist;

before(async () => {
  dist = await buildMock();
  b = await openTestPage({ dist });
});
after(async () => {
  await b?.close();
});

const wp = (name, ...args) => b.page.evaluate(([n, a]) => window.wp[n](...a), [name, args]);

test("mock: load, train with events, pause/resume, generate, forward, export", async () => {
  const loaded = await wp("load", MODEL, { backend: "cpu" });
  assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
  assert.equal(loaded.device.backend, "cpu");
  assert.deepEqual(loaded.progressFiles.sort(), ["config.json", "model.safetensors", "tokenizer.json"]);

  await b.page.setInputFiles("#data", join(ROOT, "tests/fixtures/data/prompt_completion.jsonl"));
  assert.equal((await wp("startTrain", { task: "causal-lm", method: "lora", steps: 40, mock_step_ms: 30 })).error, undefined);
  await b.page.waitForFunction(() => window.wp.events().filter((e) => e.event === "step").length >= 3);
  assert.deepEqual(await wp("pause"), { ok: true });
  const pausedAt = (await wp("events")).filter((e) => e.event === "step").length;
  await b.page.waitForTimeout(300);
  assert.equal((await wp("events")).filter((e) => e.event === "step").length, pausedAt, "no steps while paused");
  // Model operations are refused while a run is open.
  const busy = await wp("generate", "x");
  assert.equal(busy.error?.kind, "input");
  assert.deepEqual(await wp("resume"), { ok: true });
  const r = await wp("waitTrain");
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  assert.equal(r.summary.reason, "completed");
  assert.equal(r.summary.steps, 40);
  assert.equal(r.events[0].event, "start");
  assert.ok(r.events.some((e) => e.event === "paused") && r.events.some((e) => e.event === "resumed"));
  assert.equal(r.events.at(-1).event, "done");

  const g = await wp("generate", "hi", { maxNewTokens: 3 });
  assert.deepEqual(g.tokens, [" t0a", " t1a", " t2a"]);
  assert.equal(g.text, " t0a t1a t2a");
  const g0 = await wp("generate", "hi", { maxNewTokens: 1, adapter: false });
  assert.equal(g0.text, " t0");
  assert.equal((await wp("forward", [1, 2])).length, 8);
  const files = await wp("exportFiles");
  assert.deepEqual(Object.keys(files).sort(), ["README.md", "adapter_config.json", "adapter_model.safetensors", "webpeft.json"]);
  assert.deepEqual(await wp("reloadAdapter"), { ok: true });
});

test("mock: cancel stops the run and keeps the worker usable", async () => {
  assert.equal((await wp("load", MODEL, { backend: "cpu" })).error, undefined);
  await b.page.setInputFiles("#data", join(ROOT, "tests/fixtures/data/prompt_completion.jsonl"));
  await wp("startTrain", { task: "causal-lm", method: "lora", steps: 1000 });
  await b.page.waitForFunction(() => window.wp.events().some((e) => e.event === "step"));
  assert.deepEqual(await wp("cancel"), { ok: true });
  const r = await wp("waitTrain");
  assert.equal(r.summary.reason, "cancelled");
  assert.ok(r.summary.steps < 1000);
  assert.equal((await wp("forward", [1])).length, 4);
});

test("mock: typed errors (bad line, truncated model, size limit)", async () => {
  const bad = await wp("loadBytes", MODEL, { backend: "cpu", truncate: 4 });
  assert.equal(bad.error?.kind, "format");
  assert.equal(bad.error?.source, "model.safetensors");
  assert.ok(bad.error?.isWebPeftError);
  assert.equal(await wp("alive"), 2);

  const big = await wp("load", MODEL, { backend: "cpu", maxBytes: 1000 });
  assert.equal(big.error?.kind, "device");
  assert.match(big.error.message, /maxBytes limit of .*1000 bytes/);

  assert.equal((await wp("load", MODEL, { backend: "cpu" })).error, undefined);
  await b.page.setInputFiles("#data", join(ROOT, "tests/fixtures/data/bad_line.jsonl"));
  const s = await wp("startTrain", { task: "causal-lm", method: "lora", steps: 2 });
  assert.equal(s.error, undefined);
  const r = await wp("waitTrain");
  assert.equal(r.error?.kind, "input");
  assert.equal(r.error?.line, 2);
  assert.equal(r.error?.source, "bad_line.jsonl");
});

test("mock: a wasm trap is a 'crash' error, never a hang (sync and in a future)", async () => {
  for (const mock_trap_async of [false, true]) {
    assert.equal((await wp("load", MODEL, { backend: "cpu" })).error, undefined);
    await wp("startTrainData", [{ text: "a" }, { text: "b" }], { task: "causal-lm", method: "lora", steps: 10, mock_trap_at: 2, mock_trap_async });
    const r = await Promise.race([wp("waitTrain"), new Promise((ok) => setTimeout(() => ok({ hung: true }), 15_000))]);
    assert.equal(r.hung, undefined, `training promise hung (async=${mock_trap_async})`);
    assert.equal(r.error?.kind, "crash", JSON.stringify(r));
    assert.match(r.error.message, /mock panic/);
    // The worker is dead: later calls fail fast with the same kind; the page lives.
    const f = await wp("forward", [1]);
    assert.equal(f.error?.kind, "crash");
    assert.equal(await wp("alive"), 2);
  }
});

test("mock: backend auto picks CPU on a software adapter, with a notice", async () => {
  const r = await wp("load", MODEL, { backend: "auto" });
  assert.equal(r.error, undefined);
  assert.equal(r.device.backend, "cpu");
  assert.match(r.device.notice, /WebGPU/);
  const g = await wp("load", MODEL, { backend: "webgpu" });
  assert.equal(g.device.backend, "webgpu");
});

test("mock: a missing worker script is an error, not a hang", async () => {
  const r = await wp("load", MODEL, { backend: "cpu", workerUrl: "/nope/worker.js" });
  assert.equal(r.error?.kind, "crash");
});

test("mock: checkpointEvery emits checkpoint events; resumeFrom continues from one", async () => {
  assert.equal((await wp("load", MODEL, { backend: "cpu" })).error, undefined);
  const r = await b.page.evaluate(async () => {
    const { Tuner } = window.webpeft;
    const t = await Tuner.load({ urls: ["/tests/fixtures/tiny-llama/config.json", "/tests/fixtures/tiny-llama/tokenizer.json", "/tests/fixtures/tiny-llama/model.safetensors"] }, { backend: "cpu" });
    const data = [{ text: "a" }, { text: "b" }];
    const opts = { task: "causal-lm", method: "lora", steps: 7, checkpointEvery: 3, mock_step_ms: 1 };
    const run = t.train(data, opts);
    const seen = [];
    for await (const e of run.events) seen.push(e);
    await run.done;
    const ck = seen.filter((e) => e.event === "checkpoint");
    // Replay keeps only the newest checkpoint.
    const replay = [];
    for await (const e of run.events) replay.push(e);
    const t2 = await Tuner.load({ urls: ["/tests/fixtures/tiny-llama/config.json", "/tests/fixtures/tiny-llama/tokenizer.json", "/tests/fixtures/tiny-llama/model.safetensors"] }, { backend: "cpu" });
    const run2 = t2.train(data, opts, undefined, { resumeFrom: ck[0].files });
    const steps2 = [];
    for await (const e of run2.events) if (e.event === "step") steps2.push(e.step);
    const s2 = await run2.done;
    let bad;
    try {
      await t2.train(data, opts, undefined, { resumeFrom: { config: new Uint8Array(1) } }).done;
    } catch (e) {
      bad = { kind: e.kind, source: e.source, typed: e instanceof window.webpeft.WebPeftError };
    }
    t.dispose();
    t2.dispose();
    return {
      ck: ck.map((e) => ({ step: e.step, keys: Object.keys(e.files).sort(), bytes: Object.values(e.files).every((b) => b instanceof Uint8Array) })),
      replayCk: replay.filter((e) => e.event === "checkpoint").map((e) => e.step),
      steps2,
      s2: s2.steps,
      bad,
    };
  });
  assert.deepEqual(r.ck.map((c) => c.step), [3, 6]);
  assert.deepEqual(r.ck[0].keys, ["config", "optimizer", "sidecar", "state", "weights"]);
  assert.ok(r.ck.every((c) => c.bytes));
  assert.deepEqual(r.replayCk, [6]);
  assert.deepEqual(r.steps2, [4, 5, 6, 7]);
  assert.equal(r.s2, 7);
  assert.deepEqual(r.bad, { kind: "input", source: "resumeFrom", typed: true });
});

test("mock: iterating run.events throws the error of a failed run (at start or at a later step)", async () => {
  const r = await b.page.evaluate(async () => {
    const { Tuner, WebPeftError } = window.webpeft;
    const t = await Tuner.load({ urls: ["/tests/fixtures/tiny-llama/config.json", "/tests/fixtures/tiny-llama/tokenizer.json", "/tests/fixtures/tiny-llama/model.safetensors"] }, { backend: "cpu" });
    const data = [{ text: "a" }, { text: "b" }];
    const iterate = async (run) => {
      const seen = [];
      try {
        for await (const e of run.events) seen.push(e.event);
        return { seen, threw: null };
      } catch (e) {
        return { seen, threw: { kind: e.kind, source: e.source, message: e.message, typed: e instanceof WebPeftError } };
      }
    };
    const failing = t.train(data, { task: "causal-lm", method: "lora", steps: 10, mock_step_ms: 1, mock_fail_at: 3 });
    const failed = await iterate(failing);
    const done = await failing.done.then(() => null, (e) => e.message);
    const replay = await iterate(failing);
    const badStart = t.train(data, { task: "causal-lm", method: "lorax" });
    const bad = await iterate(badStart);
    await badStart.done.catch(() => {});
    const fine = await iterate(t.train(data, { task: "causal-lm", method: "lora", steps: 2, mock_step_ms: 1 }));
    t.dispose();
    return { failed, done, replay, bad, fine };
  });
  assert.deepEqual(r.failed.seen, ["start", "step", "step"]);
  assert.equal(r.failed.threw?.kind, "input", JSON.stringify(r.failed));
  assert.equal(r.failed.threw.typed, true);
  assert.match(r.failed.threw.message, /NaN at step 3/);
  assert.equal(r.done, r.failed.threw.message, "the events throw the error run.done rejects with");
  assert.deepEqual(r.replay, r.failed, "every iteration ends with the error");
  assert.deepEqual(r.bad.seen, []);
  assert.equal(r.bad.threw?.kind, "input", JSON.stringify(r.bad));
  assert.equal(r.bad.threw.source, "method");
  assert.match(r.bad.threw.message, /expected one of `lora`, `dora`/);
  assert.equal(r.fine.threw, null, JSON.stringify(r.fine));
  assert.equal(r.fine.seen.at(-1), "done");
});

test("mock: the adapter choice reaches the core, and resetAdapter() drops the adapter", async () => {
  const r = await b.page.evaluate(async () => {
    const { Tuner } = window.webpeft;
    const t = await Tuner.load({ urls: ["/tests/fixtures/tiny-llama/config.json", "/tests/fixtures/tiny-llama/tokenizer.json", "/tests/fixtures/tiny-llama/model.safetensors"] }, { backend: "cpu" });
    const data = [{ text: "a" }, { text: "b" }];
    const opts = { task: "causal-lm", method: "lora", r: 4, steps: 1, mock_step_ms: 1 };
    const chosen = async (o) => {
      const run = t.train(data, o);
      let start;
      for await (const e of run.events) if (e.event === "start") start = e.adapter;
      return [start, (await run.done).adapter];
    };
    const out = { first: await chosen(opts), same: await chosen(opts), other: await chosen({ ...opts, r: 8 }), forced: await chosen({ ...opts, r: 8, adapter: "new" }) };
    out.withAdapter = Array.from(await t.forward([1]));
    await t.resetAdapter();
    out.reset = Array.from(await t.forward([1]));
    out.cont = await t.train(data, { ...opts, adapter: "continue" }).done.then(() => null, (e) => ({ kind: e.kind, source: e.source }));
    t.dispose();
    return out;
  });
  assert.deepEqual(r.first, ["new", "new"]);
  assert.deepEqual(r.same, ["continue", "continue"]);
  assert.deepEqual(r.other, ["new", "new"]);
  assert.deepEqual(r.forced, ["new", "new"]);
  assert.deepEqual(r.withAdapter, [0.5, 1.5, 2.5, 3.5]);
  assert.deepEqual(r.reset, [0, 1, 2, 3], "the mock's base-model outputs after resetAdapter()");
  assert.deepEqual(r.cont, { kind: "input", source: "adapter" });
});
