// A chat style taught by example and tried in a conversation, as a person would: the
// bundled SmolLM2-135M-Instruct chat model, two conversations typed in the conversations
// editor (turns and conversations added, a role changed, removed again; a half-written one
// named by the core's check), exported as JSONL and imported back, the pirate sample
// read into the editor, a bad file refused; a very short run (3 steps) on the wasm CPU
// backend; then in Try it two user turns answered by the base and the adapted model, each
// with its own history, temperature 0 giving the same reply to the same history, a higher
// temperature sampled, Stop keeping a partial reply, and the layout at phone width.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openPage, advanced, waitStatus, ROOT, OUT, SHOTS } from "./helpers.mjs";

const CONVS = [
  {
    system: "You are a pirate. Answer briefly.",
    turns: [
      ["user", "What is the capital of France?"],
      ["assistant", "Arr, that be Paris, matey! Yo ho!"],
      ["user", "And of Spain?"],
      ["assistant", "Madrid, me hearty, where the galleons rest! Yo ho!"],
    ],
  },
  {
    system: "",
    turns: [
      ["user", "How do I boil an egg?"],
      ["assistant", "Drop yer egg in boilin' water for nine minutes, savvy? Yo ho!"],
    ],
  },
];
const MESSAGES = CONVS.map((c) => [...(c.system ? [{ role: "system", content: c.system }] : []), ...c.turns.map(([role, content]) => ({ role, content }))]);

let b;
before(async () => {
  b = await openPage();
});
after(async () => {
  await b?.close();
});

const dataStatus = (page) => page.locator("#data-status");
const convStatus = (page) => page.locator("#conversations-status");
const chatStatus = (page) => page.locator("#chat-status");
const focusedLabel = (page) => page.evaluate(() => document.querySelector(`label[for="${document.activeElement.id}"]`)?.textContent);

/** The editor's conversations as shown: [{ system, turns: [[role, text]] }]. */
function editorConversations(page) {
  return page.locator("#conversation-list .conversation").evaluateAll((blocks) =>
    blocks.map((bl) => ({
      system: bl.querySelector(".system-prompt").value,
      turns: [...bl.querySelectorAll(".turn")].map((t) => [t.querySelector("select").value, t.querySelector("textarea").value]),
    })),
  );
}

/** Clicks a button that downloads, and returns the file's name, text and path. */
async function download(page, name) {
  const [dl] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name, exact: true }).click()]);
  const path = join(OUT, `chat-${dl.suggestedFilename()}`);
  await dl.saveAs(path);
  return { file: dl.suggestedFilename(), text: readFileSync(path, "utf8"), path };
}

/** A transcript as shown: [[role, text, note]] (the note says why a reply ended early). */
function transcript(page, name) {
  return page.getByRole("log", { name }).evaluate((log) =>
    [...log.querySelectorAll(".chat-msg")].map((m) => [m.dataset.role, m.querySelector(".text").textContent, m.querySelector(".reply-note")?.textContent.trim() ?? null]),
  );
}
const BASE = "Base model conversation";
const ADAPTED = "Adapted model conversation";

/** Sends `text` from the message box with Enter and waits until both models have answered. */
async function say(page, text) {
  await page.getByLabel("Your message").fill(text);
  await page.getByLabel("Your message").press("Enter");
  await chatStatus(page).filter({ hasText: /^Both models answered\.$/ }).waitFor({ timeout: 90_000 });
}

test("the conversations editor: turns and conversations typed, added and removed, JSONL out and back in, the pirate sample", { timeout: 120_000 }, async () => {
  const { page } = b;
  await page.getByLabel(/SmolLM2-135M-Instruct: chat model/).check();
  await page.getByLabel("Backend").selectOption("cpu");
  await page.getByRole("button", { name: "Load model" }).click();
  await page.getByRole("status").filter({ hasText: /^Loaded SmolLM2-135M-Instruct/ }).waitFor({ timeout: 90_000 });
  // A chat model: the task is generation, and section 2 offers the conversations editor instead of the classes one.
  assert.equal(await page.getByLabel("Task").inputValue(), "causal-lm");
  assert.ok(await page.getByRole("region", { name: "Or write example conversations (chat)" }).isVisible());
  assert.equal(await page.getByRole("region", { name: "Or write your own examples (text classification)" }).isVisible(), false);

  // Conversation 1: a system prompt and four turns; the third and fourth added by keyboard.
  const [c1, c2] = CONVS;
  await page.getByLabel("Conversation 1 system prompt (optional)").fill(c1.system);
  await page.getByLabel("Conversation 1 turn 1 (user)", { exact: true }).fill(c1.turns[0][1]);
  await page.getByLabel("Conversation 1 turn 2 (assistant)", { exact: true }).fill(c1.turns[1][1]);
  for (const [n, [role, text]] of [[3, c1.turns[2]], [4, c1.turns[3]]]) {
    await page.getByRole("button", { name: "Add turn to conversation 1" }).press("Enter");
    // A new turn takes the other role than the last one, and the focus.
    assert.equal(await focusedLabel(page), `Conversation 1 turn ${n} (${role})`);
    await page.keyboard.insertText(text);
  }

  // Conversation 2, added by keyboard: the focus goes to its system prompt (left empty).
  await page.getByRole("button", { name: "Add conversation" }).press("Enter");
  assert.equal(await focusedLabel(page), "Conversation 2 system prompt (optional)");
  await page.getByLabel("Conversation 2 turn 1 (user)", { exact: true }).fill(c2.turns[0][1]);
  await page.getByLabel("Conversation 2 turn 2 (assistant)", { exact: true }).fill(c2.turns[1][1]);

  // Conversation 3, half written: the core's check names it (nothing to learn without an answer).
  await page.getByRole("button", { name: "Add conversation" }).click();
  await page.getByLabel("Conversation 3 turn 1 (user)", { exact: true }).fill("Hello?");
  await page.locator("#conversations-msg").filter({ hasText: /^Conversation 3: no assistant message, so nothing to learn from$/ }).waitFor({ timeout: 30_000 });
  // A role changed renames the turn; an extra turn removed; then the whole conversation removed.
  await page.getByLabel("Conversation 3 turn 1 role").selectOption("assistant");
  assert.equal(await page.getByLabel("Conversation 3 turn 1 (assistant)", { exact: true }).inputValue(), "Hello?");
  await page.getByRole("button", { name: "Add turn to conversation 3" }).click();
  assert.equal(await page.locator("#conversation-list .conversation").nth(2).locator(".turn").count(), 3);
  await page.getByRole("button", { name: "Remove turn 3 of conversation 3" }).click();
  assert.equal(await page.locator("#conversation-list .conversation").nth(2).locator(".turn").count(), 2);
  await page.getByRole("button", { name: "Remove conversation 3" }).click();
  assert.equal(await page.getByLabel("Conversation 3 system prompt (optional)").count(), 0);

  // The typed conversations are the data, checked by the core with the model's chat template.
  await dataStatus(page).filter({ hasText: /^conversations\.jsonl: JSON lines \(chat messages\), 2 rows; [\d,]+ tokens, longest row \d+/ }).waitFor({ timeout: 30_000 });
  assert.equal(await page.locator("#conversations-msg").textContent(), "");
  assert.equal(await page.locator("#data-msg").textContent(), "");
  assert.deepEqual(await editorConversations(page), CONVS);
  assert.match(await convStatus(page).textContent(), /^2 conversations, 6 turns: training uses these \(as conversations\.jsonl\)\.$/);

  // Export: the conversations as the core reads them, one {"messages": [...]} a line.
  const out = await download(page, "Export conversations (JSONL)");
  assert.equal(out.file, "conversations.jsonl");
  assert.deepEqual(out.text.trim().split("\n").map((l) => JSON.parse(l)), MESSAGES.map((messages) => ({ messages })));
  assert.equal(await page.evaluate(() => window.webpeftPage.data.text), out.text, "the exported file is the data training uses");

  // The pirate sample fills the editor (to read and edit there) and becomes the data.
  const sample = readFileSync(join(ROOT, "www/samples/chat-style.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l).messages);
  await page.getByRole("button", { name: "Sample: pirate chat style (JSONL, 48 rows)" }).click();
  await convStatus(page).filter({ hasText: /^Imported 48 conversations from chat-style\.jsonl; training uses them/ }).waitFor({ timeout: 30_000 });
  await dataStatus(page).filter({ hasText: /^conversations\.jsonl: JSON lines \(chat messages\), 48 rows; / }).waitFor({ timeout: 30_000 });
  const shown = await editorConversations(page);
  assert.equal(shown.length, 48);
  assert.deepEqual(shown.map((c) => c.turns.map(([role, content]) => ({ role, content }))), sample);
  assert.equal(await page.getByLabel("Conversation 48 turn 2 (assistant)", { exact: true }).count(), 1);

  // The export imported back: the same conversations and, byte for byte, the same data.
  await page.getByLabel("Import conversations (JSONL)").setInputFiles(out.path);
  await convStatus(page).filter({ hasText: /^Imported 2 conversations from chat-conversations\.jsonl; training uses them \(as conversations\.jsonl\)\.$/ }).waitFor({ timeout: 30_000 });
  assert.deepEqual(await editorConversations(page), CONVS);
  await dataStatus(page).filter({ hasText: /^conversations\.jsonl: JSON lines \(chat messages\), 2 rows; / }).waitFor({ timeout: 30_000 });
  assert.equal(await page.evaluate(() => window.webpeftPage.data.text), out.text);

  // A file the core refuses is not imported: its line is named and the editor is kept.
  const bad = join(OUT, "bad-chat.jsonl");
  writeFileSync(bad, `${out.text.split("\n")[0]}\n{"messages": [{"role": "user", "content": "Anyone there?"}]}\n`);
  await page.getByLabel("Import conversations (JSONL)").setInputFiles(bad);
  await page.locator("#conversations-msg").filter({ hasText: /^Not imported: 1 problem in bad-chat\.jsonl: line 2: no assistant message, so nothing to learn from$/ }).waitFor({ timeout: 30_000 });
  assert.deepEqual(await editorConversations(page), CONVS);
});

test("a 3-step run on the typed conversations, then a multi-turn chat with the base and the adapted model: histories, temperature, Stop", { timeout: 180_000 }, async () => {
  const { page } = b;
  await dataStatus(page).filter({ hasText: /^conversations\.jsonl: .*2 rows; / }).waitFor({ timeout: 30_000 });
  // Very short: training a 135M model on two wasm threads takes about 2 s a step at this size.
  await advanced(page, { "Steps (overrides epochs; 0 = use epochs)": 3, "Batch size": 2, "Sequence length (tokens)": 64, "Evaluate every N steps (0 = at the end only)": 0, "Checkpoint every N steps (0 = off)": 0 });
  // A rate high enough for 3 steps to change the adapted replies, so that the two histories differ.
  await page.getByLabel("Learning rate").fill("0.02");
  await page.getByRole("slider", { name: "Held out for evaluation" }).press("Home");
  assert.equal(await page.locator("#eval-split-value").textContent(), "0%");
  await page.getByRole("button", { name: "Start" }).click();
  await waitStatus(page, /^Finished: 3 steps/, 120_000);

  // Try it is a chat for this model: two transcripts, a message box, the sampling settings.
  await page.getByRole("heading", { name: "Try it" }).scrollIntoViewIfNeeded();
  assert.equal(await page.getByRole("button", { name: "Compare base and adapted" }).isVisible(), false);
  const temperature = page.getByRole("slider", { name: "Temperature" });
  const topP = page.getByRole("slider", { name: "Top-p (nucleus)" });
  assert.equal(await temperature.inputValue(), "0");
  assert.equal(await page.locator("#chat-temperature-value").textContent(), "0 (greedy)");
  assert.equal(await topP.inputValue(), "0.9");
  await page.getByLabel("Max new tokens per reply").fill("20");

  // Every tuner.chat call the page makes, with what it passed and when it settled.
  await page.evaluate(() => {
    const t = window.webpeftPage.tuner;
    const chat = t.chat.bind(t);
    window.chatCalls = [];
    t.chat = (messages, opts) => {
      const call = { messages: JSON.parse(JSON.stringify(messages)), adapter: opts.adapter, temperature: opts.temperature, topP: opts.topP, maxNewTokens: opts.maxNewTokens, seed: opts.seed, signal: opts.signal instanceof AbortSignal, start: performance.now() };
      window.chatCalls.push(call);
      const reply = chat(messages, opts);
      reply.then((text) => Object.assign(call, { end: performance.now(), text }), (e) => Object.assign(call, { end: performance.now(), error: e.kind }));
      return reply;
    };
  });
  const calls = () => page.evaluate(() => window.chatCalls);

  // An empty message is an input error, said under Try it.
  await page.getByRole("button", { name: "Send to both" }).click();
  await page.locator("#try-msg").filter({ hasText: /^Please check the input \(message\): type a message first$/ }).waitFor({ timeout: 5_000 });

  // Two user turns; each model answers both, the base model first.
  const q1 = "What is the capital of Italy?";
  const q2 = "And what is the capital of Germany?";
  await say(page, q1);
  assert.equal(await page.locator("#try-msg").textContent(), "");
  await say(page, q2);
  const base = await transcript(page, BASE);
  const adapted = await transcript(page, ADAPTED);
  for (const [name, t] of [["base", base], ["adapted", adapted]]) {
    assert.deepEqual(t.map(([role, , note]) => [role, note]), [["user", null], ["assistant", null], ["user", null], ["assistant", null]], `${name} transcript`);
    assert.equal(t[0][1], q1);
    assert.equal(t[2][1], q2);
    assert.ok(t[1][1].trim() && t[3][1].trim(), `${name} replies: ${JSON.stringify([t[1][1], t[3][1]])}`);
  }
  assert.notDeepEqual([adapted[1][1], adapted[3][1]], [base[1][1], base[3][1]], "the adapter changed the replies");
  let c = await calls();
  assert.deepEqual(c.map((x) => x.adapter), [false, true, false, true], "base first, then adapted, each turn");
  for (let i = 1; i < c.length; i++) assert.ok(c[i].start >= c[i - 1].end, `call ${i} started after call ${i - 1} ended`);
  // Each side's second request carries its own first reply: separate histories, the same user turns.
  assert.deepEqual(c[2].messages, [{ role: "user", content: q1 }, { role: "assistant", content: base[1][1] }, { role: "user", content: q2 }]);
  assert.deepEqual(c[3].messages, [{ role: "user", content: q1 }, { role: "assistant", content: adapted[1][1] }, { role: "user", content: q2 }]);
  assert.deepEqual(c.map((x) => x.text), [base[1][1], adapted[1][1], base[3][1], adapted[3][1]], "the transcripts show the replies");
  for (const x of c) assert.deepEqual([x.temperature, x.topP, x.maxNewTokens, x.signal], [0, 0.9, 20, true]);
  assert.equal(c[0].seed, c[1].seed, "one seed for both sides of a turn");
  await page.getByRole("heading", { name: "Try it" }).scrollIntoViewIfNeeded();
  await page.locator("#try-section").screenshot({ path: join(SHOTS, "chat.png") });

  // New conversation clears both; temperature 0 (greedy) gives the same replies to the same history.
  await page.getByRole("button", { name: "New conversation" }).click();
  assert.deepEqual(await transcript(page, BASE), []);
  assert.deepEqual(await transcript(page, ADAPTED), []);
  await say(page, q1);
  assert.deepEqual((await transcript(page, BASE))[1], base[1], "greedy base reply repeats");
  assert.deepEqual((await transcript(page, ADAPTED))[1], adapted[1], "greedy adapted reply repeats");

  // A higher temperature (by keyboard: 30 steps of 0.05) and top-p 1 sample: the same history twice gets different replies.
  for (let i = 0; i < 30; i++) await temperature.press("ArrowRight");
  await topP.press("End");
  assert.equal(await page.locator("#chat-temperature-value").textContent(), "1.5");
  assert.equal(await page.locator("#chat-top-p-value").textContent(), "1");
  const story = "Tell me a short story about a ship.";
  const sampled = [];
  for (let i = 0; i < 2; i++) {
    await page.getByRole("button", { name: "New conversation" }).click();
    await say(page, story);
    sampled.push((await transcript(page, BASE))[1][1]);
  }
  c = (await calls()).slice(-4);
  for (const x of c) assert.deepEqual([x.temperature, x.topP, x.maxNewTokens], [1.5, 1, 20]);
  assert.notEqual(c[0].seed, c[2].seed, "a new seed for each message");
  assert.notEqual(sampled[0], sampled[1], `sampled replies differ: ${JSON.stringify(sampled)}`);

  // Stop during a long reply: the partial text stays, the adapted side is not asked, the controls come back.
  await temperature.press("Home");
  await page.getByLabel("Max new tokens per reply").fill("400");
  await page.getByRole("button", { name: "New conversation" }).click();
  const n = (await calls()).length;
  await page.getByLabel("Your message").fill("Tell me a long story about a pirate ship and its crew.");
  await page.getByRole("button", { name: "Send to both" }).click();
  assert.ok(await page.getByRole("button", { name: "Stop reply" }).isEnabled());
  assert.ok(await page.getByRole("button", { name: "Send to both" }).isDisabled());
  assert.ok(await page.getByRole("button", { name: "Start" }).isDisabled(), "no training under a reply");
  await page.waitForFunction(() => (document.querySelector('#chat-base .chat-msg[data-role="assistant"] .text')?.textContent.length ?? 0) >= 15, null, { timeout: 30_000 });
  await page.getByRole("button", { name: "Stop reply" }).click();
  await chatStatus(page).filter({ hasText: /^Stopped: the partial reply is kept\.$/ }).waitFor({ timeout: 30_000 });
  const cut = await transcript(page, BASE);
  assert.equal(cut.length, 2);
  assert.equal(cut[1][2], "(stopped)");
  assert.ok(cut[1][1].length >= 15, `partial reply kept: ${JSON.stringify(cut[1][1])}`);
  assert.deepEqual((await transcript(page, ADAPTED))[1], ["assistant", "", "(not answered: stopped)"]);
  c = (await calls()).slice(n);
  assert.deepEqual(c.map((x) => [x.adapter, x.error]), [[false, "aborted"]], "one base request, aborted");
  assert.equal(await page.locator("#try-msg").textContent(), "", "a stop is not an error");
  for (const name of ["Send to both", "New conversation", "Start"]) assert.ok(await page.getByRole("button", { name, exact: true }).isEnabled(), `${name} enabled again`);
  assert.ok(await page.getByRole("button", { name: "Stop reply" }).isDisabled());
  await page.waitForTimeout(1000);
  assert.equal((await transcript(page, BASE))[1][1], cut[1][1], "no more text after Stop");
  assert.ok(cut[1][1].length < 1000, "stopped well before 400 tokens");

  // The conversation goes on after a stop, each side's history holding what it shows.
  await page.getByLabel("Max new tokens per reply").fill("8");
  await say(page, "Go on.");
  c = (await calls()).slice(n + 1);
  assert.deepEqual(c.map((x) => x.adapter), [false, true]);
  assert.deepEqual(c[0].messages.slice(1), [{ role: "assistant", content: cut[1][1] }, { role: "user", content: "Go on." }]);
  assert.deepEqual(c[1].messages.slice(1), [{ role: "assistant", content: "" }, { role: "user", content: "Go on." }]);

  // At phone width: no sideways scrolling; the chat's controls are on screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(200);
  const o = await page.evaluate(() => ({ sw: document.scrollingElement.scrollWidth, iw: innerWidth }));
  assert.ok(o.sw <= o.iw, `scrollWidth ${o.sw} > innerWidth ${o.iw} at 390 px`);
  for (const el of [
    page.getByRole("log", { name: BASE }),
    page.getByRole("log", { name: ADAPTED }),
    page.getByLabel("Your message"),
    page.getByRole("button", { name: "Send to both" }),
    page.getByRole("button", { name: "Stop reply" }),
    page.getByRole("button", { name: "New conversation" }),
    temperature,
    topP,
    page.getByLabel("Max new tokens per reply"),
    page.getByRole("button", { name: "Add turn to conversation 1" }),
    page.getByLabel("Conversation 1 turn 4 (assistant)", { exact: true }),
  ]) {
    await el.scrollIntoViewIfNeeded();
    const box = await el.boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 390.5 && box.width > 0, `inside the viewport at 390 px: ${JSON.stringify(box)}`);
  }
  await page.setViewportSize({ width: 1280, height: 800 });
  assert.deepEqual(b.console.filter((l) => l.startsWith("[pageerror]") || /Failed to load resource/.test(l)), [], "no page errors or missing files");
});

test("a causal LM without a chat template keeps the single prompt, and the core says the conversations need one", { timeout: 90_000 }, async () => {
  const { page } = b;
  // tests/fixtures/tiny-llama: random weights, a tokenizer.json without a chat template.
  await page.getByLabel("Files on this computer").check();
  await page.getByLabel("Model files").setInputFiles(["config.json", "tokenizer.json", "model.safetensors"].map((f) => join(ROOT, "tests/fixtures/tiny-llama", f)));
  await page.getByRole("button", { name: "Load model" }).click();
  await page.getByRole("status").filter({ hasText: /^Loaded config\.json, tokenizer\.json, model\.safetensors/ }).waitFor({ timeout: 60_000 });
  assert.equal(await page.getByLabel("Task").inputValue(), "causal-lm");
  // Another model: the conversations started with SmolLM2 are gone.
  assert.equal(await page.locator("#chat .chat-msg").count(), 0);
  assert.equal(await page.getByRole("button", { name: "Send to both" }).isVisible(), false);
  assert.equal(await page.getByRole("log", { name: BASE }).isVisible(), false);
  // The typed conversations are still the data; the core's check says why this model cannot train on them.
  await page.locator("#data-msg").filter({ hasText: /has chat messages but the tokenizer \(tokenizer\.json\) has no chat template/ }).waitFor({ timeout: 30_000 });

  await page.getByLabel("Prompt", { exact: true }).fill("Once upon a time");
  await page.getByRole("button", { name: "Compare base and adapted" }).click();
  await page.waitForFunction(() => !document.getElementById("compare").disabled && document.getElementById("adapted-out").textContent, null, { timeout: 60_000 });
  assert.ok((await page.locator("#base-out").textContent()).length > 0, "the base model generated from the prompt");
  assert.match(await page.locator("#adapted-out").textContent(), /no adapter yet/);
  assert.equal(await page.locator("#try-msg").textContent(), "");
});
