// Exact checkpoints: a LoRA run on tiny-llama (CPU backend) with checkpointEvery 5
// is run once uninterrupted (A), then again in a fresh page (B) from A's step-5
// checkpoint with `resumeFrom`. B must continue exactly: steps 6..10 with A's
// losses and learning rates, and the same final logits. The schedule (linear
// with warm-up) and the shuffled data order would both show a restart.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { openTestPage, modelUrls, requireBuild, ROOT } from "./harness.mjs";

const MODEL = modelUrls("tests/fixtures/tiny-llama");
const DATA = join(ROOT, "tests/fixtures/data/prompt_completion.jsonl");
const TOKENS = [1, 5, 9, 17, 33];
const OPTIONS = {
  task: "causal-lm",
  method: "lora",
  r: 8,
  alpha: 16,
  dropout: 0,
  steps: 10,
  lr: 1e-2,
  batch: 4,
  seqLen: 32,
  schedule: "linear",
  warmup: 2,
  seed: 0,
  shuffle: true,
  checkpointEvery: 5,
};

const pages = [];
after(async () => {
  for (const p of pages) await p.close();
});

/**
 * Loads tiny-llama in a fresh page, trains on the #data file (resuming from
 * `resumeFrom`, plain arrays of bytes, if given), and returns the step events,
 * the checkpoints (as plain arrays), the summary and the final logits.
 */
async function runInFreshPage(resumeFrom) {
  const b = await openTestPage();
  pages.push(b);
  await b.page.setInputFiles("#data", DATA);
  return b.page.evaluate(
    async ({ urls, options, tokens, resumeFrom }) => {
      try {
        const { Tuner } = window.webpeft;
        const tuner = await Tuner.load({ urls }, { backend: "cpu" });
        const data = document.getElementById("data").files[0];
        const resume = resumeFrom
          ? { resumeFrom: Object.fromEntries(Object.entries(resumeFrom).map(([k, v]) => [k, Uint8Array.from(v)])) }
          : {};
        const run = tuner.train(data, options, undefined, resume);
        const steps = [];
        const checkpoints = [];
        let start;
        for await (const e of run.events) {
          if (e.event === "start") start = e;
          if (e.event === "step") steps.push({ step: e.step, loss: e.loss, lr: e.lr });
          if (e.event === "checkpoint") {
            checkpoints.push({ step: e.step, files: Object.fromEntries(Object.entries(e.files).map(([k, v]) => [k, Array.from(v)])) });
          }
        }
        const summary = await run.done;
        const logits = Array.from(await tuner.forward(tokens));
        tuner.dispose();
        return { start, steps, checkpoints, summary, logits, device: tuner.device.backend };
      } catch (e) {
        return { error: { kind: e?.kind, message: String(e?.message ?? e), source: e?.source } };
      }
    },
    { urls: MODEL, options: OPTIONS, tokens: TOKENS, resumeFrom },
  );
}

const relDiff = (a, b) => Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b), 1e-12);

test("resume from a checkpoint continues exactly (tiny-llama, LoRA, CPU)", { timeout: 15 * 60_000 }, async () => {
  requireBuild();
  const a = await runInFreshPage();
  assert.equal(a.error, undefined, JSON.stringify(a.error));
  assert.equal(a.device, "cpu");
  assert.deepEqual(a.steps.map((s) => s.step), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.ok(a.steps.every((s) => Number.isFinite(s.loss)), JSON.stringify(a.steps));
  // Step 5 only: the last step (10) ends the run, which needs no checkpoint.
  assert.deepEqual(a.checkpoints.map((c) => c.step), [5]);
  const ck = a.checkpoints[0].files;
  assert.deepEqual(Object.keys(ck).sort(), ["config", "optimizer", "sidecar", "state", "weights"]);
  for (const [k, v] of Object.entries(ck)) if (k !== "sidecar") assert.ok(v.length > 0, `checkpoint ${k} is empty`);
  console.log(`A: losses ${a.steps.map((s) => s.loss.toFixed(5)).join(" ")}; checkpoint ${Object.entries(ck).map(([k, v]) => `${k} ${v.length} B`).join(", ")}`);

  const b = await runInFreshPage(ck);
  assert.equal(b.error, undefined, JSON.stringify(b.error));
  assert.deepEqual(b.steps.map((s) => s.step), [6, 7, 8, 9, 10], "the resumed run continues at step 6");
  assert.equal(b.summary.steps, 10);
  assert.equal(b.summary.reason, "completed");
  assert.equal(b.start.totalSteps, a.start.totalSteps);
  let worst = 0;
  for (const s of b.steps) {
    const ref = a.steps.find((x) => x.step === s.step);
    const d = relDiff(s.loss, ref.loss);
    worst = Math.max(worst, d);
    assert.ok(d <= 1e-5, `step ${s.step}: loss ${s.loss} vs ${ref.loss} uninterrupted (rel. diff ${d})`);
    assert.ok(relDiff(s.lr, ref.lr) <= 1e-6, `step ${s.step}: lr ${s.lr} vs ${ref.lr}`);
  }
  assert.equal(b.logits.length, a.logits.length);
  let maxDiff = 0;
  for (let i = 0; i < a.logits.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a.logits[i] - b.logits[i]));
  console.log(`B: losses ${b.steps.map((s) => s.loss.toFixed(5)).join(" ")}; worst loss rel. diff ${worst.toExponential(2)}, logits max abs diff ${maxDiff.toExponential(2)}`);
  assert.ok(maxDiff <= 1e-5, `final logits differ by ${maxDiff}`);
});
