// Privacy: once the model has loaded, training, evaluation, generation and
// export make no network request at all. Responsiveness: while the worker
// trains, the page keeps drawing frames and handles a click quickly.
// Both on the CPU backend (the worker is busiest there; no GPU process helps).
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

test("privacy: no request after the model has loaded (train, eval, generate, export)", { timeout: 10 * 60_000 }, async () => {
  const loaded = await wp("load", MODEL, { backend: "cpu" });
  assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
  // Pick the files before recording: choosing a file is not a request either way.
  await b.page.setInputFiles("#data", join(ROOT, "tests/fixtures/data/prompt_completion.jsonl"));
  await b.page.setInputFiles("#eval", join(ROOT, "tests/fixtures/data/prompt_completion.jsonl"));

  const requests = [];
  const record = (where) => (r) => requests.push(`${where}: ${r.method()} ${r.url()}`);
  b.page.on("request", record("page"));
  b.context.on("request", record("context"));
  await b.context.route("**", (route) => {
    requests.push(`route: ${route.request().method()} ${route.request().url()}`);
    return route.continue();
  });
  try {
    const r = await wp("train", { task: "causal-lm", method: "lora", steps: 6, evalEvery: 3, lr: 1e-2, batch: 4, seqLen: 32 });
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.ok(r.events.some((e) => e.event === "eval"), "an eval ran");
    const g = await wp("generate", "What is 2+2? ", { maxNewTokens: 8 });
    assert.equal(g.error, undefined, JSON.stringify(g.error));
    const g2 = await wp("generate", "What is 2+2? ", { maxNewTokens: 4, temperature: 0.8, topP: 0.9, seed: 3 });
    assert.equal(g2.error, undefined, JSON.stringify(g2.error));
    const files = await wp("exportFiles");
    assert.equal(files.error, undefined, JSON.stringify(files.error));
    assert.ok(files["adapter_model.safetensors"] > 0);
    const size = await wp("exportZipSize");
    assert.ok(size > 0);
    await b.page.waitForTimeout(500);
  } finally {
    b.page.removeAllListeners("request");
    b.context.removeAllListeners("request");
    await b.context.unrouteAll({ behavior: "ignoreErrors" });
  }
  assert.deepEqual(requests, [], `requests after load:\n${requests.join("\n")}`);
});

test("responsiveness: frames keep coming and a click is handled within 200 ms while training", { timeout: 10 * 60_000 }, async () => {
  const loaded = await wp("load", MODEL, { backend: "cpu" });
  assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
  await b.page.setInputFiles("#data", join(ROOT, "tests/fixtures/data/prompt_completion.jsonl"));
  const s = await wp("startTrain", { task: "causal-lm", method: "lora", steps: 100000, lr: 1e-3, batch: 8, seqLen: 64 });
  assert.equal(s.error, undefined, JSON.stringify(s.error));
  await b.page.waitForFunction(() => window.wp.events().some((e) => e.event === "step"), null, { timeout: 120_000 });

  const f = await wp("frames", 1000);
  console.log(`responsiveness: ${f.frames} frames in ${f.ms.toFixed(0)} ms while training`);
  assert.ok(f.frames > 10, `${f.frames} frames in 1 s`);

  const before = await b.page.evaluate(() => window.clicks.length);
  await b.page.click("#btn");
  await b.page.click("#btn");
  const clicks = await b.page.evaluate(() => window.clicks);
  assert.equal(clicks.length, before + 2);
  const delays = clicks.slice(before).map((c) => c.delay);
  console.log(`responsiveness: click handler delays ${delays.map((d) => d.toFixed(1)).join(", ")} ms; task delay ${(await wp("taskDelay")).toFixed(1)} ms`);
  for (const d of delays) assert.ok(d < 200, `click handled after ${d} ms`);
  assert.ok((await wp("taskDelay")) < 200);

  // Training was running the whole time.
  const steps = stepLosses(await wp("events")).length;
  assert.deepEqual(await wp("cancel"), { ok: true });
  const r = await wp("waitTrain");
  assert.equal(r.summary.reason, "cancelled");
  assert.ok(r.summary.steps >= steps);
});
