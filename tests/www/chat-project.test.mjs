// The chat's conversation is kept in its project, as a person would find it: a 3-step run on
// the pirate sample with the bundled SmolLM2-135M-Instruct, two messages answered by the base and
// the adapted model, then a reload; opening the project shows both transcripts again, loading
// the run's adapter lets the conversation go on with the histories it had, and a corrupt
// transcript file is named without keeping the rest of the project from opening.
import { test } from "node:test";
import assert from "node:assert/strict";
import { openPage, advanced, waitStatus, reloadPage } from "./helpers.mjs";

const NAME = "Typed conversations on SmolLM2-135M-Instruct";
const BASE = "Base model conversation";
const ADAPTED = "Adapted model conversation";
const chatStatus = (page) => page.locator("#chat-status");

/** A transcript as shown: [[role, text, note]]. */
function transcript(page, name) {
  return page.getByRole("log", { name }).evaluate((log) =>
    [...log.querySelectorAll(".chat-msg")].map((m) => [m.dataset.role, m.querySelector(".text").textContent, m.querySelector(".reply-note")?.textContent.trim() ?? null]),
  );
}

/** Sends `text` with Enter and waits until both models have answered. */
async function say(page, text) {
  await page.getByLabel("Your message").fill(text);
  await page.getByLabel("Your message").press("Enter");
  await chatStatus(page).filter({ hasText: /^Both models answered\.$/ }).waitFor({ timeout: 90_000 });
}

/** The one project's conversation file in OPFS: its path and text (null when project.json names none). */
const savedChat = (page) =>
  page.evaluate(async () => {
    const projects = await (await navigator.storage.getDirectory()).getDirectoryHandle("webpeft-projects");
    for await (const [id, dir] of projects.entries()) {
      const p = JSON.parse(await (await (await dir.getFileHandle("project.json")).getFile()).text());
      if (!p.chat) return null;
      return { path: `webpeft-projects/${id}/${p.chat}`, text: await (await (await dir.getFileHandle(p.chat)).getFile()).text() };
    }
    return null;
  });

/** Waits until the project's saved conversation has `n` messages a side (it is saved a moment after each exchange); returns it. */
async function savedWith(page, n) {
  for (let tries = 0; tries < 50; tries++) {
    const chat = await savedChat(page);
    if (chat && JSON.parse(chat.text).base.length === n) return chat;
    await page.waitForTimeout(200);
  }
  throw new Error(`no conversation of ${n} messages a side saved in the project: ${JSON.stringify(await savedChat(page))?.slice(0, 300)}`);
}

async function openTheProject(page, status) {
  await page.getByRole("button", { name: `Open project ${NAME}` }).click();
  await page.locator("#projects-status").filter({ hasText: status }).waitFor({ timeout: 90_000 });
  assert.match(await page.locator("#model-status").textContent(), /^Loaded SmolLM2-135M-Instruct/);
}

test("the chat's conversation is saved in its project: back after a reload, going on with the run's adapter; a corrupt one is named", { timeout: 300_000 }, async () => {
  const b = await openPage();
  try {
    const { page } = b;
    await page.getByLabel(/SmolLM2-135M-Instruct: chat model/).check();
    await page.getByLabel("Backend").selectOption("cpu");
    await page.getByRole("button", { name: "Load model" }).click();
    await page.getByRole("status").filter({ hasText: /^Loaded SmolLM2-135M-Instruct/ }).waitFor({ timeout: 90_000 });
    await page.getByRole("button", { name: "Sample: pirate chat style (JSONL, 48 rows)" }).click();
    await page.locator("#data-status").filter({ hasText: /^conversations\.jsonl: JSON lines \(chat messages\), 48 rows; / }).waitFor({ timeout: 30_000 });
    // Very short (as in chat.test.mjs): 3 steps at a rate high enough for the adapted replies to differ.
    await advanced(page, { "Steps (overrides epochs; 0 = use epochs)": 3, "Batch size": 2, "Sequence length (tokens)": 64, "Evaluate every N steps (0 = at the end only)": 0, "Checkpoint every N steps (0 = off)": 0 });
    await page.getByLabel("Learning rate").fill("0.02");
    await page.getByRole("slider", { name: "Held out for evaluation" }).press("Home");
    await page.getByRole("button", { name: "Start" }).click();
    await waitStatus(page, /^Finished: 3 steps/, 120_000);

    await page.getByLabel("Max new tokens per reply").fill("8");
    await say(page, "What is the capital of Italy?");
    await say(page, "And of Germany?");
    const base = await transcript(page, BASE);
    const adapted = await transcript(page, ADAPTED);
    assert.equal(base.length, 4);
    assert.equal(adapted.length, 4);
    // Saved with the project as the rest of the work is: a moment after the exchange.
    const saved = JSON.parse((await savedWith(page, 4)).text);
    assert.deepEqual(saved.base.map((m) => [m.role, m.content]), base.map(([role, text]) => [role, text]));
    assert.deepEqual(saved.adapted.map((m) => [m.role, m.content]), adapted.map(([role, text]) => [role, text]));

    // A new visit starts with an empty chat; opening the project brings both transcripts back.
    await reloadPage(page);
    await openTheProject(page, /^Opened “Typed conversations on SmolLM2-135M-Instruct”\. .* Its conversation is back under Try it\.$/);
    assert.deepEqual(await transcript(page, BASE), base);
    assert.deepEqual(await transcript(page, ADAPTED), adapted);
    assert.equal(
      await chatStatus(page).textContent(),
      "The conversation saved with this project is back. It was held with run 1's adapter: load it (section 6) to go on with it; a message sent without it starts a new conversation.",
    );
    // The run's adapter put back: the conversation goes on, each side from its own history.
    await page.getByRole("button", { name: "Load run 1's adapter", exact: true }).click();
    await page.locator("#keep-status").filter({ hasText: /^Loaded run 1's adapter/ }).waitFor({ timeout: 30_000 });
    assert.equal(await chatStatus(page).textContent(), "Run 1's adapter is on the model again: the conversation goes on with it.");
    assert.deepEqual(await transcript(page, BASE), base);
    await page.evaluate(() => {
      const t = window.webpeftPage.tuner;
      const chat = t.chat.bind(t);
      window.chatCalls = [];
      t.chat = (messages, opts) => (window.chatCalls.push({ messages: JSON.parse(JSON.stringify(messages)), adapter: opts.adapter }), chat(messages, opts));
    });
    await say(page, "And of Spain?");
    const history = (t) => t.map(([role, content]) => ({ role, content }));
    const calls = await page.evaluate(() => window.chatCalls);
    assert.deepEqual(calls.map((c) => c.adapter), [false, true]);
    assert.deepEqual(calls[0].messages, [...history(base), { role: "user", content: "And of Spain?" }]);
    assert.deepEqual(calls[1].messages, [...history(adapted), { role: "user", content: "And of Spain?" }]);
    assert.equal((await transcript(page, ADAPTED)).length, 6);
    const { path } = await savedWith(page, 6);

    // A conversation file that is not JSON: opening says which file and why; the rest opens.
    await page.evaluate(async (name) => {
      const projects = await (await navigator.storage.getDirectory()).getDirectoryHandle("webpeft-projects");
      for await (const dir of projects.values()) {
        const w = await (await dir.getFileHandle(name)).createWritable();
        await w.write('{"version": 1, "base": [');
        await w.close();
      }
    }, path.split("/").at(-1));
    await reloadPage(page);
    await openTheProject(page, /^Opened “Typed conversations on SmolLM2-135M-Instruct”\. Its last run is shown under Training; load a run's adapter below to try it\.$/);
    const msg = await page.locator("#projects-msg").textContent();
    assert.ok(msg.startsWith(`${path} could not be read: it is not valid JSON (`), msg);
    assert.match(msg, /\)\. The rest of the project opened; its saved conversation is not shown, and the project's next save leaves it out\.$/);
    await page.locator("#data-status").filter({ hasText: /^conversations\.jsonl: JSON lines \(chat messages\), 48 rows/ }).waitFor({ timeout: 30_000 });
    assert.match(await page.locator("#train-status").textContent(), /^Run 1 of “Typed conversations on SmolLM2-135M-Instruct”, .+: Finished: 3 steps/);
    assert.equal(await page.getByLabel("Learning rate").inputValue(), "0.02");
    assert.deepEqual(await transcript(page, BASE), []);
    assert.deepEqual(await transcript(page, ADAPTED), []);
    // And the chat works as on a fresh page.
    await page.getByLabel("Your message").fill("Hello");
    await page.getByLabel("Your message").press("Enter");
    await chatStatus(page).filter({ hasText: /^The base model answered/ }).waitFor({ timeout: 90_000 });
    assert.deepEqual(b.console.filter((l) => l.startsWith("[pageerror]") || /Failed to load resource/.test(l)), [], "no page errors or missing files");
  } finally {
    await b.close();
  }
});
