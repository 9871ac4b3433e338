// The main path, as a person would take it: the bundled MiniLM classifier, the
// sample ticket CSV, a short LoRA run with pause/resume/stop and a live chart,
// the base/adapted comparison, the adapter download, and a reload mid-training
// that offers to resume from the OPFS checkpoint.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { unzipSync, strFromU8 } from "fflate";
import { openPage, loadMiniLm, advanced, waitStatus, chartPoints, trainStatus, ROOT, SHOTS, OUT } from "./helpers.mjs";

let b;
before(async () => {
  b = await openPage();
});
after(async () => {
  await b?.close();
});

test("train MiniLM on the ticket CSV: chart, pause/resume, stop, compare, download", { timeout: 240_000 }, async () => {
  const { page } = b;
  await page.screenshot({ path: join(SHOTS, "empty.png"), fullPage: false });

  await loadMiniLm(page);
  assert.match(await page.locator("#fact-arch").textContent(), /BertModel/);
  assert.match(await page.locator("#fact-params").textContent(), /22,713,216/);
  assert.match(await page.locator("#fact-device").textContent(), /CPU/);

  await page.getByLabel("Training data file").setInputFiles(join(ROOT, "www/samples/ticket-labels.csv"));
  await page.locator("#data-status").filter({ hasText: /CSV, 60 rows.*billing, bug, feature/ }).waitFor();
  assert.ok((await page.getByRole("table", { name: "Data preview" }).locator("tr").count()) >= 5);
  assert.equal(await page.getByLabel("Method", { exact: true }).inputValue(), "lora");
  assert.match(await page.locator("#est-params").textContent(), /estimate/);

  // Enough steps to pause and stop in the middle; checkpoints every 5.
  await advanced(page, { "Steps (overrides epochs; 0 = use epochs)": 60, "Evaluate every N steps (0 = at the end only)": 3, "Checkpoint every N steps (0 = off)": 5 });
  await page.getByRole("button", { name: "Start" }).click();
  await waitStatus(page, /^Step [3-9]/);
  assert.match(await page.locator("#est-params").textContent(), /exact/);
  assert.ok((await chartPoints(page)) > 1, "the chart has more than one point");
  await page.screenshot({ path: join(SHOTS, "training.png"), fullPage: false });

  await page.getByRole("button", { name: "Pause" }).click();
  await waitStatus(page, /^Paused at step/);
  const pausedAt = await chartPoints(page);
  await page.waitForTimeout(1500);
  assert.equal(await chartPoints(page), pausedAt, "no steps while paused");
  assert.ok(await page.getByRole("button", { name: "Resume", exact: true }).isEnabled());
  // The page says how much browser storage it uses (checkpoints every 5 steps are in OPFS).
  await page.locator("#storage-use").filter({ hasText: /^Browser storage for this page: [\d.]+ [KMG]?B used of [\d.]+ [KMG]?B/ }).waitFor({ timeout: 10_000 });
  // Paused, the run can move to a GPU machine: a zip whose job resumes at this step.
  const pausedStep = Number((await trainStatus(page).textContent()).match(/^Paused at step (\d+)/)[1]);
  const [job] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Continue on a GPU machine (zip)" }).click()]);
  const jobZip = unzipSync(readFileSync(await job.path()));
  const jobJson = JSON.parse(strFromU8(jobZip["webpeft-job/job.json"]));
  assert.equal(jobJson.step, pausedStep, "the job resumes where the run paused");
  assert.equal(jobJson.task, "seq-cls");
  for (const f of ["train.py", "checkpoint/adapter_model.safetensors", "checkpoint/optimizer_state.safetensors", "data/examples.jsonl", "data/batches.json"]) {
    assert.ok(jobZip[`webpeft-job/${f}`], `the GPU job lacks ${f}`);
  }
  await page.getByRole("button", { name: "Resume", exact: true }).click();
  await page.waitForFunction((n) => Number(document.getElementById("chart").dataset.points) > n + 1, pausedAt, { timeout: 60_000 });
  await page.getByRole("button", { name: "Stop" }).click();
  await waitStatus(page, /^Stopped: \d+ steps/);
  const steps = Number((await trainStatus(page).textContent()).match(/Stopped: (\d+)/)[1]);
  assert.ok(steps > pausedAt && steps < 60, `stopped mid-run at ${steps}`);
  assert.ok(await page.getByRole("button", { name: "Start" }).isEnabled());

  // A fresh, complete run (3 epochs) for the comparison: Start trains a new adapter (adapter "new", no reload).
  await advanced(page, { "Steps (overrides epochs; 0 = use epochs)": 0, "Checkpoint every N steps (0 = off)": 0, "Evaluate every N steps (0 = at the end only)": 7 });
  await page.getByLabel("Learning rate").fill("0.005");
  await page.getByLabel("Epochs", { exact: true }).fill("3");
  assert.match(await page.locator("#settings-why").textContent(), /^Your settings are used\. Suggested for this model and data: LoRA/);
  await page.getByRole("button", { name: "Start" }).click();
  await waitStatus(page, /^Finished: 21 steps/, 120_000);
  assert.match(await page.locator("#train-status").textContent(), /last loss/);
  assert.ok((await chartPoints(page)) === 21, "a fresh chart for the fresh run");

  // Base and adapted predictions side by side.
  await page.getByRole("button", { name: "Compare base and adapted" }).click();
  const base = page.getByRole("table", { name: "Base predictions" });
  const adapted = page.getByRole("table", { name: "Adapted predictions" });
  await adapted.waitFor({ timeout: 30_000 });
  await base.waitFor();
  assert.equal(await adapted.locator("tr").count(), 4);
  assert.match(await adapted.textContent(), /(billing|bug|feature) \d+%/);
  // With the adapter, the predictions follow the text as it is typed: no button.
  await page.getByLabel("Texts to classify (one per line)").fill("the invoice charged me twice\nthe app crashes when I log in");
  await page.waitForFunction(() => document.querySelector('table[aria-label="Adapted predictions"]')?.rows.length === 3, null, { timeout: 30_000 });
  const live = await adapted.locator("tr").nth(1).textContent();
  assert.match(live, /^the invoice charged me twice/);
  assert.equal(await base.locator("tr").count(), 3, "the base column follows too");
  await page.getByRole("heading", { name: "Try it" }).scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(SHOTS, "finished.png"), fullPage: true });

  // The download: a zip with PEFT's two files and a README.
  const [dl] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download adapter" }).click()]);
  const zipPath = join(OUT, "adapter.zip");
  await dl.saveAs(zipPath);
  const files = unzipSync(new Uint8Array(readFileSync(zipPath)));
  assert.ok(files["README.md"], "README.md in the zip");
  // Its Python names the labels with int keys, as the model's predictions are (transformers 5 keeps
  // string keys given to from_pretrained; tests/flow_check.py runs this snippet).
  assert.match(strFromU8(files["README.md"]), /id2label=\{0: "billing", 1: "bug", 2: "feature"\}\)/);
  const config = JSON.parse(strFromU8(files["adapter_config.json"]));
  assert.equal(config.peft_type, "LORA");
  assert.equal(config.base_model_name_or_path, "sentence-transformers/all-MiniLM-L6-v2");
  const st = files["adapter_model.safetensors"];
  const n = Number(new DataView(st.buffer, st.byteOffset).getBigUint64(0, true));
  assert.ok(n > 2 && 8 + n <= st.length, `safetensors header length ${n}`);
  const header = JSON.parse(strFromU8(st.subarray(8, 8 + n)));
  const tensors = Object.keys(header).filter((k) => k !== "__metadata__");
  assert.ok(tensors.some((k) => k.includes("lora_A")) && tensors.some((k) => k.includes("lora_B")), tensors.join(", "));
  for (const k of tensors) assert.equal(header[k].data_offsets[1] - header[k].data_offsets[0], header[k].shape.reduce((a, x) => a * x, 1) * 4);
  assert.deepEqual(b.console.filter((l) => l.startsWith("[pageerror]") || /Failed to load resource/.test(l)), [], "no page errors or missing files");
});

test("reload mid-training offers to resume, and resuming finishes the run", { timeout: 180_000 }, async () => {
  const { page } = b;
  await advanced(page, { "Steps (overrides epochs; 0 = use epochs)": 200, "Checkpoint every N steps (0 = off)": 4 });
  await page.getByRole("button", { name: "Start" }).click();
  await page.locator("#keep-status").filter({ hasText: /^Checkpoint saved at step 8/ }).waitFor({ timeout: 90_000 });
  await page.reload();
  await page.waitForFunction(() => window.webpeftReady === true);
  const offer = page.getByRole("region", { name: "Resume previous run?" });
  await offer.waitFor({ timeout: 10_000 });
  assert.match(await offer.textContent(), /all-MiniLM-L6-v2 with ticket-labels\.csv stopped at step (8|12|16) of 200/);
  // Resume: the model, the adapter and the data come back; training continues past the checkpoint.
  await page.getByRole("button", { name: "Resume run" }).click();
  await waitStatus(page, /^Step (1[3-9]|[2-9]\d)/, 90_000);
  // One run, continued: the chart holds the saved history and the new steps, one point per step, no gap.
  const { step, points } = await page.evaluate(() => ({
    step: Number(document.getElementById("train-status").textContent.match(/^Step (\d+)/)?.[1]),
    points: Number(document.getElementById("chart").dataset.points),
  }));
  assert.equal(points, step, `chart points ${points} at step ${step}`);
  assert.equal(await page.getByLabel("Steps (overrides epochs; 0 = use epochs)").inputValue(), "200");
  await page.getByRole("button", { name: "Stop" }).click();
  await waitStatus(page, /^Stopped/);
  // A run ended on purpose leaves no checkpoint behind.
  await page.reload();
  await page.waitForFunction(() => window.webpeftReady === true);
  await page.waitForTimeout(500);
  assert.equal(await page.getByRole("region", { name: "Resume previous run?" }).isVisible(), false);
});
