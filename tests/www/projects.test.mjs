// Projects saved in the browser (OPFS), as a person uses them: the work is saved as it is done,
// a reload lists the project, opening it brings back the model, the data, the settings and the
// run with its metrics, chart and adapter (the same predictions as before the reload); it can be
// renamed and deleted. A typed examples editor comes back as typed, a corrupt project file is
// named in the list without breaking it, and a full quota says so. New project saves the work
// and starts afresh on the loaded model; the project before opens again as it was.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { unzipSync, strFromU8 } from "fflate";
import { openPage, loadMiniLm, advanced, waitStatus, chartPoints, reloadPage, comparePredictions, assertSamePredictions, ROOT } from "./helpers.mjs";

const TEXTS = ["I was charged twice this month", "The app freezes when I upload a file", "Please add an export to PDF"];
const NAME = "ticket-labels on all-MiniLM-L6-v2";

/** The folders in OPFS's webpeft-projects/ (what the page keeps). */
const storedProjects = (page) =>
  page.evaluate(async () => {
    const root = await navigator.storage.getDirectory();
    let dir;
    try {
      dir = await root.getDirectoryHandle("webpeft-projects");
    } catch {
      return [];
    }
    const names = [];
    for await (const name of dir.keys()) names.push(name);
    return names;
  });

const projectList = (page) => page.locator("#project-list");
const field = (page, label) => page.getByLabel(label, { exact: true });

test("a project is saved while working: listed after a reload, reopened with its data, settings, run and adapter, renamed, deleted", { timeout: 300_000 }, async () => {
  const b = await openPage();
  try {
    const { page } = b;
    assert.match(await page.locator("#project-status").textContent(), /^Not saved yet/);
    assert.ok(await page.locator("#projects-empty").isVisible(), "no projects on a first visit");
    await loadMiniLm(page);
    await page.getByLabel("Training data file").setInputFiles(join(ROOT, "www/samples/ticket-labels.csv"));
    await page.locator("#data-status").filter({ hasText: /CSV, 60 rows/ }).waitFor();
    await advanced(page, { "Steps (overrides epochs; 0 = use epochs)": 6, "Evaluate every N steps (0 = at the end only)": 0, "Checkpoint every N steps (0 = off)": 0 });
    await field(page, "Learning rate").fill("0.004");
    await field(page, "LoRA rank (r)").fill("4");
    // Saved as the person works, under a name from the data and the model.
    await page.locator("#project-status").filter({ hasText: /^Saved in this browser/ }).waitFor({ timeout: 10_000 });
    assert.equal(await field(page, "Project name").inputValue(), NAME);

    await page.getByRole("button", { name: "Start" }).click();
    await waitStatus(page, /^Finished: 6 steps/, 120_000);
    await page.locator("#results-status").filter({ hasText: /^On \d+ held-out examples/ }).waitFor({ timeout: 60_000 });
    // The run's line shows once its record (with the held-out results) is saved.
    const runLine = page.getByRole("list", { name: "Runs of this project" }).locator("li");
    await runLine.filter({ hasText: /^Run 1: finished · 6 steps · LoRA r 4, learning rate 0\.004 · on ticket-labels\.csv · last loss [\d.]+ · eval loss [\d.]+, accuracy \d+% · adapted \d+%, base \d+% right on \d+ held-out examples/ }).waitFor({ timeout: 30_000 });
    const shown = {
      eval: await page.locator("#stat-eval").textContent(),
      loss: await page.locator("#stat-loss").textContent(),
      results: await page.locator("#results-status").textContent(),
      table: await page.getByRole("table", { name: "Per-class accuracy on the held-out examples" }).innerText(),
      points: await chartPoints(page),
    };
    assert.match(shown.eval, /accuracy \d+%/);
    assert.equal(shown.points, 6);
    const before = await comparePredictions(page, TEXTS);

    // A new visit: the form is the page's own again, and the project is listed.
    await reloadPage(page);
    assert.equal(await field(page, "Learning rate").inputValue(), "0.001");
    assert.equal(await field(page, "LoRA rank (r)").inputValue(), "8");
    assert.match(await page.locator("#train-status").textContent(), /^Not started/);
    const item = projectList(page).locator("li").filter({ hasText: NAME });
    await item.waitFor({ timeout: 10_000 });
    assert.match(await item.innerText(), /all-MiniLM-L6-v2 · 1 run · changed .+ · [\d.]+ KB/);

    await page.getByRole("button", { name: `Open project ${NAME}` }).click();
    await page.locator("#projects-status").filter({ hasText: /^Opened “ticket-labels on all-MiniLM-L6-v2”/ }).waitFor({ timeout: 60_000 });
    assert.match(await page.locator("#model-status").textContent(), /^Loaded all-MiniLM-L6-v2/);
    await page.locator("#data-status").filter({ hasText: /^ticket-labels\.csv: CSV, 60 rows/ }).waitFor({ timeout: 30_000 });
    assert.equal(await field(page, "Learning rate").inputValue(), "0.004");
    assert.equal(await field(page, "LoRA rank (r)").inputValue(), "4");
    assert.equal(await field(page, "Steps (overrides epochs; 0 = use epochs)").inputValue(), "6");
    assert.equal(await field(page, "Evaluate every N steps (0 = at the end only)").inputValue(), "0");
    assert.equal(await field(page, "Checkpoint every N steps (0 = off)").inputValue(), "0");
    // The run comes back: its end, its metrics, its chart and its held-out results.
    assert.match(await page.locator("#train-status").textContent(), /^Run 1 of “ticket-labels on all-MiniLM-L6-v2”, .+: Finished: 6 steps in .+, last loss [\d.]+\.$/);
    assert.equal(await page.locator("#stat-eval").textContent(), shown.eval);
    assert.equal(await page.locator("#stat-loss").textContent(), shown.loss);
    assert.equal(await page.locator("#results-status").textContent(), shown.results);
    assert.equal(await page.getByRole("table", { name: "Per-class accuracy on the held-out examples" }).innerText(), shown.table);
    assert.equal(await chartPoints(page), 6);
    await runLine.filter({ hasText: /^Run 1: finished · 6 steps/ }).waitFor();

    // Its adapter goes back on the model: the same predictions as before the reload.
    await page.getByRole("button", { name: "Load run 1's adapter", exact: true }).click();
    await page.locator("#keep-status").filter({ hasText: /^Loaded run 1's adapter/ }).waitFor({ timeout: 30_000 });
    assert.equal(await page.locator("#keep-msg").textContent(), "");
    assertSamePredictions(await comparePredictions(page, TEXTS), before);
    // And downloads as the package's zip.
    const [dl] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download run 1's adapter" }).click()]);
    assert.match(dl.suggestedFilename(), /^webpeft-lora-all-MiniLM-L6-v2-run-1\.zip$/);
    const zip = unzipSync(new Uint8Array(readFileSync(await dl.path())));
    assert.equal(JSON.parse(strFromU8(zip["adapter_config.json"])).r, 4);

    // Renamed: the list and the next visit show the new name.
    await field(page, "Project name").fill("Ticket triage");
    await projectList(page).locator("li").filter({ hasText: "Ticket triage" }).waitFor({ timeout: 10_000 });
    await reloadPage(page);
    await projectList(page).locator("li").filter({ hasText: /^Ticket triage/ }).waitFor({ timeout: 10_000 });
    assert.equal(await projectList(page).locator("li").count(), 1);
    const [id] = await storedProjects(page);
    assert.ok(id, "the project is in OPFS");

    // Deleting asks first (a dialog; Cancel keeps it), then removes it from the list and from OPFS.
    await page.getByRole("button", { name: "Delete project Ticket triage" }).click();
    const dialog = page.getByRole("dialog", { name: "Delete this project?" });
    await dialog.waitFor();
    assert.match(await dialog.textContent(), /“Ticket triage” and its 1 run, with their adapters, will be removed/);
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await dialog.waitFor({ state: "hidden" });
    assert.deepEqual(await storedProjects(page), [id]);
    await page.getByRole("button", { name: "Delete project Ticket triage" }).click();
    await dialog.getByRole("button", { name: "Delete for good" }).click();
    await page.locator("#projects-status").filter({ hasText: /^Deleted “Ticket triage”/ }).waitFor({ timeout: 10_000 });
    assert.equal(await projectList(page).locator("li").count(), 0);
    assert.ok(await page.locator("#projects-empty").isVisible());
    assert.deepEqual(await storedProjects(page), [], "gone from OPFS");
    await reloadPage(page);
    await page.waitForTimeout(500); // the list is read from OPFS after the page is ready
    assert.equal(await projectList(page).locator("li").count(), 0, "gone for good");
    assert.deepEqual(b.console.filter((l) => l.startsWith("[pageerror]") || /Failed to load resource/.test(l)), [], "no page errors or missing files");
  } finally {
    await b.close();
  }
});

test("typed examples come back in the editor; a corrupt project file is named in the list; a full quota says so, and New project then keeps the work", { timeout: 120_000 }, async () => {
  const b = await openPage();
  try {
    const { page } = b;
    await page.getByLabel("Class 1 name").fill("billing");
    await page.getByLabel("Class 1 examples (one per line)").fill("charged twice\nrefund please\ninvoice is wrong");
    await page.getByLabel("Class 2 name").fill("bug");
    await page.getByLabel("Class 2 examples (one per line)").fill("app crashes\nbutton does nothing\nerror on login");
    await page.locator("#data-status").filter({ hasText: /^examples\.csv: CSV, 6 rows/ }).waitFor({ timeout: 30_000 });
    await page.locator("#project-status").filter({ hasText: /^Saved in this browser/ }).waitFor({ timeout: 10_000 });
    await page.waitForFunction(() => document.getElementById("project-name").value === "billing, bug", null, { timeout: 10_000 });

    // A full quota: the write fails and the page says what to do; the next save that works clears it.
    await page.evaluate(() => {
      const proto = FileSystemWritableFileStream.prototype;
      window.realWrite = proto.write;
      proto.write = async function () {
        throw new DOMException("The quota has been exceeded.", "QuotaExceededError");
      };
    });
    await field(page, "Learning rate").fill("0.002");
    const msg = page.locator("#project-msg");
    await msg.filter({ hasText: /^The project “billing, bug” was not saved in this browser: this browser's storage for the page is full\. Delete projects you no longer need/ }).waitFor({ timeout: 10_000 });
    // New project then keeps the work on the page rather than lose it.
    await page.getByRole("button", { name: "New project" }).click();
    await page.locator("#projects-msg").filter({ hasText: /^The current project could not be saved \(see This project\), so the page keeps it: make room in this browser's storage, then press New project again\.$/ }).waitFor({ timeout: 10_000 });
    assert.equal(await page.getByLabel("Class 1 name").inputValue(), "billing");
    assert.equal(await field(page, "Project name").inputValue(), "billing, bug");
    await page.evaluate(() => (FileSystemWritableFileStream.prototype.write = window.realWrite));
    await field(page, "Learning rate").fill("0.003");
    await page.waitForFunction(() => document.getElementById("project-msg").textContent === "", null, { timeout: 10_000 });

    // A project folder whose project.json is not JSON (a crash, another tool).
    await page.evaluate(async () => {
      const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle("webpeft-projects");
      const broken = await dir.getDirectoryHandle("p-broken", { create: true });
      const w = await (await broken.getFileHandle("project.json", { create: true })).createWritable();
      await w.write("{ not json");
      await w.close();
    });

    await reloadPage(page);
    const list = projectList(page);
    await list.locator("li").filter({ hasText: "billing, bug" }).waitFor({ timeout: 10_000 });
    const broken = list.locator("li").filter({ hasText: "p-broken" });
    assert.match(await broken.textContent(), /^webpeft-projects\/p-broken\/project\.json could not be read: it is not valid JSON/);
    assert.equal(await page.getByLabel("Class 1 name").inputValue(), "", "the editor starts empty on a new visit");

    await page.getByRole("button", { name: "Open project billing, bug" }).click();
    await page.locator("#projects-status").filter({ hasText: /^Opened “billing, bug”/ }).waitFor({ timeout: 30_000 });
    assert.equal(await page.getByLabel("Class 1 name").inputValue(), "billing");
    assert.equal(await page.getByLabel("Class 2 examples (one per line)").inputValue(), "app crashes\nbutton does nothing\nerror on login");
    assert.match(await page.locator("#data-status").textContent(), /^examples\.csv: CSV, 6 rows/);
    assert.equal(await field(page, "Learning rate").inputValue(), "0.003");
    assert.match(await page.locator("#model-status").textContent(), /^No model loaded/, "the project had no model");

    // The unreadable one can be deleted from the list.
    await page.getByRole("button", { name: "Delete the unreadable project p-broken" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Delete for good" }).click();
    await broken.waitFor({ state: "detached", timeout: 10_000 });
    assert.equal(await list.locator("li").count(), 1);
    assert.equal((await storedProjects(page)).length, 1);
  } finally {
    await b.close();
  }
});

test("New project saves the work and starts afresh with the model still loaded; the project before opens again intact", { timeout: 240_000 }, async () => {
  const b = await openPage();
  try {
    const { page } = b;
    const downloads = () => b.server.log.filter((l) => l.endsWith("/models/all-MiniLM-L6-v2/model.safetensors")).length;
    await loadMiniLm(page);
    await page.getByLabel("Training data file").setInputFiles(join(ROOT, "www/samples/ticket-labels.csv"));
    await page.locator("#data-status").filter({ hasText: /CSV, 60 rows/ }).waitFor();
    await advanced(page, { "Steps (overrides epochs; 0 = use epochs)": 4, "Evaluate every N steps (0 = at the end only)": 0, "Checkpoint every N steps (0 = off)": 0 });
    await field(page, "Learning rate").fill("0.004");
    await field(page, "LoRA rank (r)").fill("4");
    await page.getByRole("button", { name: "Start" }).click();
    await waitStatus(page, /^Finished: 4 steps/, 120_000);
    const runLine = page.getByRole("list", { name: "Runs of this project" }).locator("li");
    await runLine.filter({ hasText: /^Run 1: finished · 4 steps .* right on \d+ held-out examples/ }).waitFor({ timeout: 60_000 });
    const table = await page.getByRole("table", { name: "Per-class accuracy on the held-out examples" }).innerText();
    const before = await comparePredictions(page, TEXTS);
    await page.evaluate(() => (window.tunerBefore = window.webpeftPage.tuner));
    const loads = downloads();

    // A change made just before is saved with it (New project saves first, as Open does).
    await field(page, "Learning rate").fill("0.005");
    await page.getByRole("button", { name: "New project" }).click();
    await page.locator("#projects-status").filter({ hasText: `“${NAME}” is saved (Open below brings it back). A new project started: all-MiniLM-L6-v2 is still loaded; choose data in section 2 to begin.` }).waitFor({ timeout: 30_000 });
    assert.equal(await page.evaluate(() => document.activeElement.id), "data-title", "the focus goes to the Data section, where the new work starts");
    // The model stays: the same one, not downloaded or loaded again, without the run's adapter.
    assert.match(await page.locator("#model-status").textContent(), /^Loaded all-MiniLM-L6-v2/);
    assert.ok(await page.evaluate(() => window.webpeftPage.tuner === window.tunerBefore), "the same loaded model");
    assert.equal(downloads(), loads);
    assert.ok(await page.getByRole("button", { name: "Download adapter", exact: true }).isDisabled(), "no adapter on the model");
    // Data, settings, the run and what it showed are cleared.
    assert.equal(await page.locator("#data-status").textContent(), "No data chosen.");
    assert.equal(await page.getByLabel("Class 1 name").inputValue(), "");
    assert.equal(await field(page, "Learning rate").inputValue(), "0.001");
    assert.equal(await field(page, "LoRA rank (r)").inputValue(), "8");
    assert.equal(await field(page, "Steps (overrides epochs; 0 = use epochs)").inputValue(), "0");
    assert.equal(await field(page, "Checkpoint every N steps (0 = off)").inputValue(), "10");
    assert.equal(await page.locator("#train-status").textContent(), "Not started.");
    assert.equal(await page.locator("#stat-loss").textContent(), "–");
    assert.equal(await chartPoints(page), 0);
    assert.equal(await page.locator("#results").isVisible(), false);
    assert.equal(await page.locator("#adapted-out").textContent(), "");
    // A new unnamed project, not saved until there is data; the one before is listed.
    assert.equal(await field(page, "Project name").inputValue(), "");
    assert.ok(await field(page, "Project name").isDisabled());
    assert.match(await page.locator("#project-status").textContent(), /^Not saved yet/);
    assert.equal(await page.getByRole("list", { name: "Runs of this project" }).isVisible(), false);
    await projectList(page).locator("li").filter({ hasText: NAME }).waitFor();
    assert.equal(await projectList(page).locator("li").count(), 1);
    assert.doesNotMatch(await projectList(page).innerText(), /open now/);
    assert.equal((await storedProjects(page)).length, 1);

    // Data makes the new work a project of its own.
    await page.getByLabel("Class 1 name").fill("billing");
    await page.getByLabel("Class 1 examples (one per line)").fill("charged twice\nrefund please");
    await page.getByLabel("Class 2 name").fill("bug");
    await page.getByLabel("Class 2 examples (one per line)").fill("app crashes\nerror on login");
    await page.locator("#project-status").filter({ hasText: /^Saved in this browser/ }).waitFor({ timeout: 30_000 });
    await page.waitForFunction(() => document.getElementById("project-name").value === "billing, bug on all-MiniLM-L6-v2", null, { timeout: 10_000 });
    await projectList(page).locator("li").filter({ hasText: "billing, bug on all-MiniLM-L6-v2" }).waitFor({ timeout: 10_000 });
    assert.equal((await storedProjects(page)).length, 2);

    // The project before opens with everything intact: data, settings (the last change too), run and adapter.
    await page.getByRole("button", { name: `Open project ${NAME}` }).click();
    await page.locator("#projects-status").filter({ hasText: `Opened “${NAME}”.` }).waitFor({ timeout: 60_000 });
    await page.locator("#data-status").filter({ hasText: /^ticket-labels\.csv: CSV, 60 rows/ }).waitFor({ timeout: 30_000 });
    assert.equal(await field(page, "Learning rate").inputValue(), "0.005");
    assert.equal(await field(page, "LoRA rank (r)").inputValue(), "4");
    assert.match(await page.locator("#train-status").textContent(), /^Run 1 of “ticket-labels on all-MiniLM-L6-v2”, .+: Finished: 4 steps/);
    assert.equal(await chartPoints(page), 4);
    assert.equal(await page.getByRole("table", { name: "Per-class accuracy on the held-out examples" }).innerText(), table);
    await page.getByRole("button", { name: "Load run 1's adapter", exact: true }).click();
    await page.locator("#keep-status").filter({ hasText: /^Loaded run 1's adapter/ }).waitFor({ timeout: 30_000 });
    assertSamePredictions(await comparePredictions(page, TEXTS), before);
    assert.equal(await projectList(page).locator("li").count(), 2);
    assert.deepEqual(b.console.filter((l) => l.startsWith("[pageerror]") || /Failed to load resource/.test(l)), [], "no page errors or missing files");
  } finally {
    await b.close();
  }
});
