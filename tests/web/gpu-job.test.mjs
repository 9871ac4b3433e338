// "Continue on a GPU machine" through the npm package: a LoRA run on tiny-llama (CPU backend) is
// paused, and `exportGpuJob()` gives the job zip. Its contents must be the native CLI's
// `webpeft gpu-job` output for the same run paused at the same step (whose train.py
// continues webpeft's losses in transformers' Trainer: tests/gpu_job_roundtrip.py): the same
// settings, rows and batches exactly, and the same optimiser state and adapter within float
// differences between the wasm and native builds. Exporting without a paused run is an error.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { unzipSync, strFromU8 } from "fflate";
import { openTestPage, modelUrls, requireBuild, readSafetensors, outDir, WEBPEFT_BIN, ROOT } from "./harness.mjs";

const MODEL = "tests/fixtures/tiny-llama";
const DATA = join(ROOT, "tests/fixtures/data/prompt_completion.jsonl");
const OPTIONS = { task: "causal-lm", method: "lora", steps: 6, lr: 1e-2, batch: 2, seqLen: 64, schedule: "linear", warmup: 2, seed: 3 };

let b;
after(async () => {
  await b?.close();
});

test("a paused run exports the GPU job the CLI writes for it", { timeout: 15 * 60_000 }, async () => {
  requireBuild();
  b = await openTestPage();
  await b.page.setInputFiles("#data", DATA);
  const got = await b.page.evaluate(
    async ({ urls, options }) => {
      try {
        const { Tuner } = window.webpeft;
        const tuner = await Tuner.load({ urls }, { backend: "cpu" });
        let early;
        try {
          await tuner.exportGpuJob();
        } catch (e) {
          early = { kind: e.kind, message: e.message };
        }
        const run = tuner.train(document.getElementById("data").files[0], options);
        let pausedAt;
        for await (const e of run.events) {
          // At step 3 or later: the CLI run then checkpoints once, at the same step (2k >= 6).
          if (e.event === "step" && e.step === 3) run.pause();
          if (e.event === "paused") {
            pausedAt = e.step;
            break;
          }
        }
        const zip = Array.from(new Uint8Array(await (await tuner.exportGpuJob()).arrayBuffer()));
        await run.cancel();
        tuner.dispose();
        return { early, pausedAt, zip };
      } catch (e) {
        return { error: { kind: e?.kind, message: String(e?.message ?? e) } };
      }
    },
    { urls: modelUrls(MODEL), options: OPTIONS },
  );
  assert.equal(got.error, undefined, JSON.stringify(got.error));
  assert.equal(got.early?.kind, "input", JSON.stringify(got.early));
  assert.match(got.early.message, /pause the training run first/);
  const k = got.pausedAt;
  assert.ok(k >= 3 && k < 6, `paused at step ${k}`);
  const files = unzipSync(Uint8Array.from(got.zip));
  const web = (n) => files[`webpeft-job/${n}`];
  for (const n of ["train.py", "README.md", "requirements.txt", "job.json", "checkpoint/adapter_config.json", "checkpoint/adapter_model.safetensors", "checkpoint/optimizer_state.safetensors", "data/examples.jsonl", "data/batches.json", "data/prompt_completion.jsonl"]) {
    assert.ok(web(n), `the zip lacks ${n}: ${Object.keys(files)}`);
  }

  // The CLI's job for the same run, checkpointed at the same step.
  const dir = await outDir("gpu-job");
  const flags = [MODEL, "--data", DATA, "--task", "causal-lm", "--method", "lora", "--steps", "6", "--lr", "1e-2", "--batch", "2", "--seq-len", "64", "--schedule", "linear", "--warmup", "2", "--seed", "3", "--save-every", String(k)];
  execFileSync(WEBPEFT_BIN, ["train", ...flags, "--out", join(dir, "run")], { cwd: ROOT, stdio: "pipe" });
  execFileSync(WEBPEFT_BIN, ["gpu-job", ...flags, "--resume", join(dir, "run/checkpoint"), "--out", join(dir, "job")], { cwd: ROOT, stdio: "pipe" });
  const cli = (n) => readFileSync(join(dir, "job", n));

  const jw = JSON.parse(strFromU8(web("job.json")));
  const jc = JSON.parse(cli("job.json").toString());
  assert.equal(jw.step, k);
  for (const key of ["step", "total_steps", "task", "batch", "grad_accum", "lr", "schedule", "warmup", "optimizer", "adam_betas", "adam_eps", "weight_decay", "clip", "seed", "pad_id"]) {
    assert.deepEqual(jw[key], jc[key], `job.json ${key}`);
  }
  for (const n of ["data/examples.jsonl", "data/batches.json", "train.py"]) {
    assert.equal(strFromU8(web(n)), cli(n).toString(), `${n} differs from the CLI's`);
  }
  const cfg = (bytes) => ({ ...JSON.parse(bytes), base_model_name_or_path: null });
  assert.deepEqual(cfg(strFromU8(web("checkpoint/adapter_config.json"))), cfg(cli("checkpoint/adapter_config.json").toString()));
  for (const n of ["checkpoint/adapter_model.safetensors", "checkpoint/optimizer_state.safetensors"]) {
    const w = readSafetensors(Buffer.from(web(n)));
    const c = readSafetensors(cli(n));
    assert.deepEqual(Object.keys(w).sort(), Object.keys(c).sort(), `${n}: tensor names`);
    for (const t of Object.keys(c)) {
      assert.deepEqual(w[t].shape, c[t].shape, `${n} ${t}`);
      const scale = Math.max(...Array.from(c[t].data, Math.abs), 1e-12);
      let worst = 0;
      for (let i = 0; i < c[t].data.length; i++) worst = Math.max(worst, Math.abs(w[t].data[i] - c[t].data[i]) / scale);
      assert.ok(worst <= 1e-3, `${n} ${t}: the browser's values differ from the CLI's by ${worst} of their scale`);
    }
  }
});
