// Differentially private training through the npm package, in the browser's worker
// (issue #14): a DP-SGD run on the wasm CPU backend gives finite losses, epsilon in
// every step event (growing, and at most the target at the end), Poisson batch sizes,
// and the privacy record in the exported adapter's webpeft.json. The numbers
// themselves are checked against Opacus natively (crate/tests/dp.rs).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { openTestPage, modelUrls, requireBuild, helper, stepLosses, ROOT } from "./harness.mjs";

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

test("DP-SGD in the browser: epsilon in the step events and in webpeft.json", { timeout: 5 * 60_000 }, async () => {
  const loaded = await wp("load", modelUrls("tests/fixtures/tiny-llama"), { backend: "cpu" });
  assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
  // 8 rows, expected batch 4 (q = 0.5), 6 steps.
  const data = readFileSync(join(ROOT, "tests/fixtures/data/prompt_completion.jsonl"), "utf8");
  const dp = { targetEpsilon: 8, delta: 1e-3, maxGradNorm: 1.0 };
  const started = await wp("startTrainData", data, { task: "causal-lm", method: "lora", steps: 6, batch: 4, seqLen: 32, lr: 1e-3, seed: 0, dp });
  assert.equal(started.error, undefined, JSON.stringify(started.error));
  const r = await wp("waitTrain");
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  const steps = r.events.filter((e) => e.event === "step");
  assert.equal(steps.length, 6, JSON.stringify(r.summary));
  const losses = stepLosses(r.events);
  assert.ok(losses.every(Number.isFinite), `finite losses: ${losses}`);
  const eps = steps.map((e) => e.epsilon);
  assert.ok(eps.every((e) => Number.isFinite(e) && e > 0), `epsilon in every step event: ${eps}`);
  for (let i = 1; i < eps.length; i++) assert.ok(eps[i] > eps[i - 1], `epsilon grows with the steps: ${eps}`);
  // The noise multiplier is calibrated so that the run ends at (or just under) the target.
  assert.ok(eps.at(-1) <= dp.targetEpsilon * 1.001 && eps.at(-1) > dp.targetEpsilon * 0.5, `final epsilon ${eps.at(-1)} against the target ${dp.targetEpsilon}`);
  const sizes = steps.map((e) => e.batchSize);
  assert.ok(sizes.every((n) => Number.isInteger(n) && n >= 0 && n <= 8), `Poisson batch sizes: ${sizes}`);

  const side = await wp("exportSidecar");
  assert.equal(side.error, undefined, JSON.stringify(side.error));
  assert.ok(side.dp, `webpeft.json has a dp record: ${JSON.stringify(side)}`);
  assert.equal(side.dp.accountant, "prv", "Opacus's PrivacyEngine default accountant");
  assert.equal(side.dp.delta, dp.delta);
  assert.equal(side.dp.max_grad_norm, dp.maxGradNorm);
  assert.equal(side.dp.steps, 6);
  assert.equal(side.dp.sample_rate, 0.5);
  assert.ok(Math.abs(side.dp.epsilon - eps.at(-1)) < 1e-9, `recorded epsilon ${side.dp.epsilon} is the last step's ${eps.at(-1)}`);
  assert.ok(side.dp.noise_multiplier > 0, JSON.stringify(side.dp));
});
