// Accessibility of the page's controls, read from Chromium's own accessibility tree (CDP
// Accessibility.getFullAXTree, what screen readers get): every control a person can use has an
// accessible name and is reachable by keyboard (focusable). Checked on the empty page and with a
// model loaded and a run paused (when the training, chat and keep controls are enabled), with the
// advanced settings open.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { openPage, loadMiniLm, advanced, waitStatus, ROOT } from "./helpers.mjs";

const CONTROLS = new Set(["button", "textbox", "combobox", "checkbox", "radio", "slider", "spinbutton", "listbox", "searchbox", "switch"]);

let b;
before(async () => {
  b = await openPage();
});
after(async () => {
  await b?.close();
});

/** The page's controls in the accessibility tree, with their name and whether they take focus (or are disabled). */
async function controls(page) {
  const cdp = await page.context().newCDPSession(page);
  const { nodes } = await cdp.send("Accessibility.getFullAXTree");
  await cdp.detach();
  const prop = (n, name) => n.properties?.find((p) => p.name === name)?.value?.value;
  return nodes
    .filter((n) => !n.ignored && CONTROLS.has(n.role?.value))
    .map((n) => ({ role: n.role.value, name: (n.name?.value ?? "").trim(), focusable: !!prop(n, "focusable"), disabled: !!prop(n, "disabled") }));
}

function check(list, when) {
  assert.ok(list.length >= 20, `${when}: only ${list.length} controls in the accessibility tree`);
  const unnamed = list.filter((c) => !c.name);
  assert.deepEqual(unnamed, [], `${when}: controls without an accessible name`);
  // Disabled controls are skipped by Tab on purpose; every enabled one must take focus.
  const unreachable = list.filter((c) => !c.disabled && !c.focusable);
  assert.deepEqual(unreachable, [], `${when}: enabled controls that the keyboard cannot reach`);
}

test("every control has an accessible name and is keyboard-reachable, before and during a run", { timeout: 240_000 }, async () => {
  const { page } = b;
  check(await controls(page), "empty page");

  await loadMiniLm(page);
  await page.getByLabel("Training data file").setInputFiles(join(ROOT, "www/samples/ticket-labels.csv"));
  await page.locator("#data-status").filter({ hasText: /CSV, 60 rows/ }).waitFor();
  await advanced(page, { "Steps (overrides epochs; 0 = use epochs)": 40 });
  await page.getByRole("button", { name: "Start" }).click();
  await waitStatus(page, /^Step [1-9]/);
  await page.getByRole("button", { name: "Pause" }).click();
  await waitStatus(page, /^Paused at step/);
  const during = await controls(page);
  check(during, "paused run");
  // The controls a person needs here are named as the page shows them.
  for (const name of ["Resume", "Stop", "Continue on a GPU machine (zip)", "Learning rate"]) {
    assert.ok(during.some((c) => c.name === name || c.name.startsWith(name)), `no control named ${name}: ${JSON.stringify(during.map((c) => c.name))}`);
  }
  await page.getByRole("button", { name: "Stop" }).click();
  await waitStatus(page, /^Stopped/);
});
