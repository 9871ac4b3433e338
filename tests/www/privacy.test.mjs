// The "Private training" switch (issue #14), as a person would use it: turn it on,
// read what it means, pick a privacy budget, train, see the epsilon spent, and find
// the guarantee recorded in the downloaded adapter's webpeft.json.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { unzipSync, strFromU8 } from "fflate";
import { openPage, loadMiniLm, advanced, waitStatus, ROOT, OUT } from "./helpers.mjs";

let b;
before(async () => {
  b = await openPage();
});
after(async () => {
  await b?.close();
});

test("private training: the switch explains itself, trains with DP-SGD and records epsilon", { timeout: 240_000 }, async () => {
  const { page } = b;
  await loadMiniLm(page);
  await page.getByLabel("Training data file").setInputFiles(join(ROOT, "www/samples/ticket-labels.csv"));
  await page.locator("#data-status").filter({ hasText: /CSV, 60 rows/ }).waitFor();

  const budget = page.getByLabel(/Privacy budget ε/);
  assert.equal(await budget.isVisible(), false, "the budget shows only with the switch on");
  const sw = page.getByLabel("Train with differential privacy");
  await sw.check();
  assert.ok(await budget.isVisible());
  assert.match(await page.locator("#dp-explain").textContent(), /learns almost nothing about any single example/);
  await budget.fill("3");
  await advanced(page, { "Steps (overrides epochs; 0 = use epochs)": 6, "Evaluate every N steps (0 = at the end only)": 0 });
  await page.getByRole("button", { name: "Start" }).click();
  await waitStatus(page, /^Finished: 6 steps/, 150_000);
  const spent = await page.locator("#stat-epsilon").textContent();
  const m = /^ε = (\d+\.\d\d) of 3 \(δ = 0\.00001\)$/.exec(spent);
  assert.ok(m, `privacy spent shown: ${spent}`);
  assert.ok(Number(m[1]) > 0 && Number(m[1]) <= 3.01, spent);

  const [dl] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download adapter" }).click()]);
  const zipPath = join(OUT, "adapter-dp.zip");
  await dl.saveAs(zipPath);
  const files = unzipSync(new Uint8Array(readFileSync(zipPath)));
  const side = JSON.parse(strFromU8(files["webpeft.json"]));
  assert.ok(side.dp, `webpeft.json records the guarantee: ${JSON.stringify(side)}`);
  assert.equal(side.dp.target_epsilon, 3);
  assert.equal(side.dp.delta, 1e-5);
  assert.equal(side.dp.max_grad_norm, 1);
  assert.equal(side.dp.steps, 6);
  assert.ok(Math.abs(side.dp.epsilon - Number(m[1])) < 0.006, `${side.dp.epsilon} vs shown ${m[1]}`);

  // Switched off again, a run is not private.
  await sw.uncheck();
  await page.getByRole("button", { name: "Start" }).click();
  // (The first run's "Finished" stays until the second one starts: wait for its first step.)
  await page.locator("#stat-epsilon").filter({ hasText: /^not private$/ }).waitFor({ timeout: 60_000 });
  await waitStatus(page, /^Finished: 6 steps/, 150_000);
});
