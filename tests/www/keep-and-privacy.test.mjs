// Keeping the work and keeping it private, as a person would check them:
// an adapter downloaded from one visit and loaded on the next gives the same
// predictions, and after the model has loaded the page makes no network
// requests through data upload, training, evaluation, the comparison and the
// adapter download.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { openPage, loadMiniLm, advanced, waitStatus, reloadPage, comparePredictions, assertSamePredictions, ROOT, OUT } from "./helpers.mjs";

const TEXTS = ["I was charged twice this month", "The app freezes when I upload a file", "Please add an export to PDF"];

/** Uploads the sample ticket CSV through the file control. */
async function uploadTickets(page) {
  await page.getByLabel("Training data file").setInputFiles(join(ROOT, "www/samples/ticket-labels.csv"));
  await page.locator("#data-status").filter({ hasText: /CSV, 60 rows.*billing, bug, feature/ }).waitFor();
}

const compare = (page, which) => comparePredictions(page, TEXTS, which);

/** Loads MiniLM, uploads the tickets and trains 6 LoRA steps (no checkpoints, no evaluation). */
async function trainSixSteps(page) {
  await loadMiniLm(page);
  await uploadTickets(page);
  await advanced(page, { "Steps (overrides epochs; 0 = use epochs)": 6, "Evaluate every N steps (0 = at the end only)": 0, "Checkpoint every N steps (0 = off)": 0 });
  await page.getByLabel("Learning rate").fill("0.005");
  await page.getByRole("button", { name: "Start" }).click();
  await waitStatus(page, /^Finished: 6 steps/, 120_000);
}

// This once crashed the core when the comparison switched a loaded adapter off
// (a loaded head swapped as a tracked tensor); see Model::set_adapter_enabled.
test("an adapter downloaded after training, loaded after a reload, predicts the same", { timeout: 180_000 }, async () => {
  const b = await openPage();
  try {
    const { page } = b;
    await trainSixSteps(page);

    const before = await compare(page);
    const base = await page.getByRole("table", { name: "Base predictions" }).locator("tr[data-probs]").evaluateAll((rows) => rows.map((r) => JSON.parse(r.dataset.probs)));
    assert.equal(before.length, TEXTS.length);
    // The adapter changes something, so getting the same numbers back below means it was loaded.
    assert.ok(
      before.some((r, i) => Object.entries(r.probs).some(([k, p]) => Math.abs(p - base[i][k]) > 1e-3)),
      "the adapted predictions differ from the base model's",
    );

    const [dl] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download adapter" }).click()]);
    const zipPath = join(OUT, "keep-adapter.zip");
    await dl.saveAs(zipPath);

    // A new visit: nothing of the run is left but the zip on disk.
    await reloadPage(page);
    await page.waitForTimeout(500); // the resume offer, if any, appears after an OPFS read
    const offer = page.getByRole("region", { name: "Resume previous run?" });
    if (await offer.isVisible()) await page.getByRole("button", { name: "Discard checkpoint" }).click();
    assert.match(await page.locator("#train-status").textContent(), /^Not started/);

    await loadMiniLm(page);
    await page.getByLabel("Load a saved adapter (zip, or its files)").setInputFiles(zipPath);
    await page.locator("#keep-status").filter({ hasText: /^Loaded the adapter from .*\.zip/ }).waitFor({ timeout: 30_000 });
    assert.equal(await page.locator("#keep-msg").textContent(), "");

    const after = await compare(page);
    assertSamePredictions(after, before);
    assert.deepEqual(b.console.filter((l) => l.startsWith("[pageerror]") || /Failed to load resource/.test(l)), [], "no page errors or missing files");
  } finally {
    await b.close();
  }
});

// Earlier versions of the page kept the last run's adapter in OPFS (webpeft-kept-adapter/); it
// is now a project's run (projects.test.mjs): the kept one moves into a project of its own,
// downloads as a zip of its files without being loaded first, and still goes back on the model
// after a reload with the same predictions.
test("an adapter an earlier version of the page kept becomes a project: after a reload it downloads as it is, goes back on the model and predicts the same", { timeout: 180_000 }, async () => {
  const b = await openPage();
  try {
    const { page } = b;
    await trainSixSteps(page);
    const before = await compare(page);
    // The storage an earlier version left: the adapter's files and its record, no projects.
    // Returns the SHA-256 of each adapter file it kept.
    const kept = await page.evaluate(async () => {
      const root = await navigator.storage.getDirectory();
      const dir = await root.getDirectoryHandle("webpeft-kept-adapter", { create: true });
      const files = await window.webpeftPage.tuner.exportAdapterFiles();
      delete files["README.md"]; // earlier versions kept the adapter's three files
      const meta = { model: "all-MiniLM-L6-v2", modelKey: "minilm", method: "lora", steps: 6, loss: 0.5, savedAt: new Date().toISOString() };
      for (const [name, data] of [...Object.entries(files), ["meta.json", JSON.stringify(meta)]]) {
        const w = await (await dir.getFileHandle(name, { create: true })).createWritable();
        await w.write(data);
        await w.close();
      }
      await root.removeEntry("webpeft-projects", { recursive: true });
      const hex = (buf) => [...new Uint8Array(buf)].map((x) => x.toString(16).padStart(2, "0")).join("");
      return Object.fromEntries(await Promise.all(Object.entries(files).map(async ([name, data]) => [name, hex(await crypto.subtle.digest("SHA-256", data))])));
    });

    await reloadPage(page);
    const item = page.locator("#project-list li").filter({ hasText: "Kept adapter (lora on all-MiniLM-L6-v2)" });
    await item.waitFor({ timeout: 10_000 });
    assert.match(await item.innerText(), /all-MiniLM-L6-v2 · 1 run/);
    assert.equal(await page.locator("#project-list li").count(), 1);
    await page.getByRole("button", { name: "Open project Kept adapter (lora on all-MiniLM-L6-v2)" }).click();
    await page.locator("#projects-status").filter({ hasText: /^Opened/ }).waitFor({ timeout: 60_000 });
    assert.match(await page.locator("#model-status").textContent(), /^Loaded all-MiniLM-L6-v2/);

    // Its adapter downloads as it is, without loading it onto the model first: a zip of the kept files.
    assert.ok(await page.getByRole("button", { name: "Download adapter", exact: true }).isDisabled(), "no adapter on the model yet");
    const [dl] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download run 1's adapter" }).click()]);
    assert.equal(dl.suggestedFilename(), "webpeft-lora-all-MiniLM-L6-v2-run-1.zip");
    const zipPath = join(OUT, "kept-run-1.zip");
    await dl.saveAs(zipPath);
    await page.locator("#keep-status").filter({ hasText: /^Saved webpeft-lora-all-MiniLM-L6-v2-run-1\.zip \(.+\): run 1's adapter: the PEFT files and webpeft\.json, as an earlier version of this page kept them\.$/ }).waitFor({ timeout: 10_000 });
    const zip = unzipSync(new Uint8Array(readFileSync(zipPath)));
    const sha = (bytes) => createHash("sha256").update(bytes).digest("hex");
    assert.deepEqual(Object.fromEntries(Object.entries(zip).map(([name, bytes]) => [name, sha(bytes)])), kept, "the kept files, byte for byte");
    // The zip goes on the model as any adapter zip does, and predicts as before.
    await page.getByLabel("Load a saved adapter (zip, or its files)").setInputFiles(zipPath);
    await page.locator("#keep-status").filter({ hasText: /^Loaded the adapter from kept-run-1\.zip/ }).waitFor({ timeout: 30_000 });
    assertSamePredictions(await compare(page), before);

    await page.getByRole("button", { name: "Load run 1's adapter", exact: true }).click();
    await page.locator("#keep-status").filter({ hasText: /^Loaded run 1's adapter/ }).waitFor({ timeout: 30_000 });
    assert.equal(await page.locator("#keep-msg").textContent(), "");
    assertSamePredictions(await compare(page), before);
    // Moved, not copied: the old folder is gone.
    const left = await page.evaluate(async () => (await navigator.storage.getDirectory()).getDirectoryHandle("webpeft-kept-adapter").then(() => true, () => false));
    assert.equal(left, false);
  } finally {
    await b.close();
  }
});

test("after the model has loaded, the page makes no network requests", { timeout: 180_000 }, async () => {
  const b = await openPage();
  try {
    const { page, context } = b;
    const requests = [];
    let phase = "load";
    const record = (where) => (req) => requests.push({ phase, where, url: req.url(), method: req.method() });
    // The context sees the page's and its workers' requests; the page listener is
    // a second witness for the page's own. Service workers are not used.
    context.on("request", record("context"));
    page.on("request", record("page"));
    page.on("worker", (w) => requests.push({ phase, where: "worker", url: w.url(), method: "WORKER" }));
    const serverBefore = () => b.server.log.length;

    await loadMiniLm(page);
    // The recorder works: the worker fetched the model's weights (the package fetches
    // in its worker), the context listener saw it, and so did the server.
    assert.ok(requests.some((r) => r.phase === "load" && r.where === "context" && /\/models\/all-MiniLM-L6-v2\/model\.safetensors$/.test(r.url)), "the worker's model download was recorded");
    assert.ok(b.server.log.some((l) => l.endsWith("/models/all-MiniLM-L6-v2/model.safetensors")));

    phase = "after load";
    const served = serverBefore();
    await uploadTickets(page);
    await advanced(page, { "Steps (overrides epochs; 0 = use epochs)": 6, "Evaluate every N steps (0 = at the end only)": 3, "Checkpoint every N steps (0 = off)": 3 });
    await page.getByRole("button", { name: "Start" }).click();
    await waitStatus(page, /^Finished: 6 steps/, 120_000);
    assert.notEqual(await page.locator("#stat-eval").textContent(), "–", "evaluation ran");
    const adapted = await compare(page);
    assert.equal(adapted.length, TEXTS.length);
    await page.getByRole("table", { name: "Base predictions" }).waitFor();
    const [dl] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download adapter" }).click()]);
    await dl.saveAs(join(OUT, "privacy-adapter.zip"));
    await page.waitForTimeout(1000); // anything sent late still gets recorded

    // blob: and data: URLs (the download is a blob: link) never leave the browser,
    // so they are not network requests; everything else counts.
    const network = requests.filter((r) => r.phase !== "load" && !/^(blob|data):/.test(r.url));
    assert.deepEqual(network, [], "no network requests after the model loaded");
    assert.deepEqual(b.server.log.slice(served), [], "the server saw no requests after the model loaded");
    assert.deepEqual(b.console.filter((l) => l.startsWith("[pageerror]")), [], "no page errors");
  } finally {
    await b.close();
  }
});
