// Shared pieces of the page tests: the page's own server (scripts/serve.mjs),
// headless Chromium with the browser tests' flags (tests/web/harness.mjs), and
// a few waits phrased the way a person reads the page.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { startServer, ROOT } from "../../scripts/serve.mjs";
import { launch } from "../web/harness.mjs";

export { ROOT };
export const SHOTS = join(ROOT, "docs/screenshots");
export const OUT = join(ROOT, "tests/out/www");
mkdirSync(OUT, { recursive: true });

/** Serves the repository, starts Chromium, opens /www/ at `viewport`. */
export async function openPage({ viewport = { width: 1280, height: 800 } } = {}) {
  const server = await startServer();
  const browser = await launch();
  const { page } = browser;
  await page.setViewportSize(viewport);
  await page.goto(`${server.url}/`); // the server redirects / to /www/
  await page.waitForFunction(() => window.webpeftReady === true, null, { timeout: 30_000 });
  return {
    ...browser,
    server,
    url: server.url,
    close: async () => {
      await browser.close();
      await server.close();
    },
  };
}

/** Loads the bundled MiniLM classifier (the default choice) on the CPU backend. */
export async function loadMiniLm(page) {
  await page.getByLabel("Backend").selectOption("cpu");
  await page.getByRole("button", { name: "Load model" }).click();
  await page.getByRole("status").filter({ hasText: /^Loaded all-MiniLM-L6-v2/ }).waitFor({ timeout: 60_000 });
}

/** Opens the advanced settings and fills them ({ label: value }). */
export async function advanced(page, values) {
  const details = page.locator("#advanced");
  if (!(await details.evaluate((d) => d.open))) await page.getByText("Advanced settings").click();
  for (const [label, value] of Object.entries(values)) await page.getByLabel(label, { exact: true }).fill(String(value));
}

export const trainStatus = (page) => page.locator("#train-status");
export async function waitStatus(page, re, timeout = 90_000) {
  await trainStatus(page).filter({ hasText: re }).waitFor({ timeout });
}
export const chartPoints = (page) => page.getByRole("img", { name: "Loss chart" }).getAttribute("data-points").then(Number);

/** Reloads the page (a new visit; OPFS keeps what the page saved) and waits until it is ready. */
export async function reloadPage(page) {
  await page.reload();
  await page.waitForFunction(() => window.webpeftReady === true, null, { timeout: 30_000 });
}

/** Types `texts` into "Try it", compares, and reads one predictions table: [{ text, label, probs }]. */
export async function comparePredictions(page, texts, which = "Adapted predictions") {
  await page.getByLabel("Texts to classify (one per line)").fill(texts.join("\n"));
  const button = page.getByRole("button", { name: "Compare base and adapted" });
  await button.click(); // disables itself until both panes are filled
  await page.waitForFunction(() => !document.getElementById("compare").disabled, null, { timeout: 60_000 });
  const table = page.getByRole("table", { name: which });
  if (!(await table.count())) {
    // Say what the page showed instead (an error in the pane or under "Try it").
    throw new Error(`no "${which}" table; the page shows: ${(await page.locator("#try-section").innerText()).slice(0, 600)}`);
  }
  return table.locator("tr[data-probs]").evaluateAll((rows) =>
    rows.map((r) => ({ text: r.cells[0].textContent, label: r.cells[1].textContent, probs: JSON.parse(r.dataset.probs) })),
  );
}

/** The same texts, labels and class probabilities (within `tol`) as `want`. */
export function assertSamePredictions(got, want, tol = 1e-4) {
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++) {
    assert.equal(got[i].text, want[i].text);
    assert.equal(got[i].label, want[i].label, `label of "${want[i].text}"`);
    assert.deepEqual(Object.keys(got[i].probs).sort(), Object.keys(want[i].probs).sort());
    for (const [k, p] of Object.entries(want[i].probs)) {
      assert.ok(Math.abs(got[i].probs[k] - p) <= tol, `"${want[i].text}" ${k}: ${got[i].probs[k]} vs ${p}`);
    }
  }
}
