// Issue #13's whole flow, driven as a person would (role and label selectors), on the bundled
// models, in one page visit and a reload:
// 1. classification: three classes typed into the examples editor, the bundled MiniLM, Start with
//    the suggested settings, paused once to take the run to a GPU machine, then finished: at least
//    85% held out and a confusion matrix; the PEFT zip and the GPU job downloaded;
// 2. chat: a style taught from conversations typed into the conversations editor on the bundled
//    SmolLM2-135M-Instruct, with the suggested settings, paused once for the GPU job, then a
//    multi-turn chat with the adapter on and off (greedy); the PEFT zip, the GGUF LoRA and the
//    GPU job downloaded;
// 3. a reload: both projects listed, the chat one reopened with its run and conversation.
// The downloads and what the page showed go to tests/out/flow/manifest.json, and the targets' own
// readers check them (tests/flow_check.py: PEFT + transformers, the gguf package, the job's
// train.py with transformers' Trainer). `npm run test:flow` runs both; it is not part of `npm test`
// (it needs torch and takes minutes).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openPage, loadMiniLm, waitStatus, trainStatus, reloadPage, ROOT } from "../www/helpers.mjs";

const OUT = join(ROOT, "tests/out/flow");
mkdirSync(OUT, { recursive: true });

// Ten short examples a class, none of them in the page's samples.
const CLASSES = [
  ["sports", ["The striker scored twice in the final", "Our team lost the match on penalties", "She won the marathon in record time", "The coach benched his best player", "A last-minute goal saved the game", "The tennis final went to five sets", "He was sent off for a bad tackle", "The league season starts next week", "They trained hard before the race", "The goalkeeper saved a penalty"]],
  ["cooking", ["Add the garlic and fry it gently", "Bake the bread for forty minutes", "Season the soup with salt and pepper", "Whisk the eggs with a little milk", "Let the dough rest for an hour", "Chop the onions finely", "Simmer the sauce until it thickens", "Roast the vegetables in a hot oven", "Stir in the cream at the end", "Grill the fish for three minutes a side"]],
  ["weather", ["Heavy rain is expected tomorrow", "It will be sunny and warm all week", "Strong winds are forecast for the coast", "Snow is falling in the mountains", "Temperatures drop below freezing tonight", "A thunderstorm is moving in from the west", "Fog will clear by midday", "The heatwave continues into the weekend", "Light showers in the afternoon", "A cold front brings clear skies"]],
];
// Typed conversations teaching one style: short replies in pirate words, ending "Yo ho!".
const CONVERSATIONS = [
  [["What is the capital of France?", "Paris, matey, where the river ships sail! Yo ho!"], ["And of Spain?", "Madrid, me hearty! Yo ho!"]],
  [["How do I boil an egg?", "Drop it in boilin' water for nine minutes, savvy? Yo ho!"]],
  [["What is two plus two?", "Four doubloons, matey! Yo ho!"]],
  [["Recommend a book.", "Treasure Island, the finest tale on the seven seas! Yo ho!"]],
  [["What should I eat for lunch?", "A hearty fish stew, like a true sea dog! Yo ho!"]],
  [["How is the weather today?", "Fair winds and calm seas, matey! Yo ho!"]],
  [["Tell me about the moon.", "She lights our course at night, me hearty! Yo ho!"]],
  [["What time is it?", "Time to hoist the sails, matey! Yo ho!"]],
];
const CHAT_PROMPTS = ["What is the capital of Italy?", "And of Germany?"];

const manifest = { classification: {}, chat: {} };
let b;
before(async () => {
  b = await openPage();
});
after(async () => {
  writeFileSync(join(OUT, "manifest.json"), JSON.stringify(manifest, null, 2));
  await b?.close();
});

/** Clicks a button that downloads; saves the file under tests/out/flow as `name` and returns its path. */
async function download(page, button, name) {
  const [dl] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: button, exact: true }).click()]);
  const path = join(OUT, name);
  await dl.saveAs(path);
  return path;
}

/** The saved record of the project named like `nameRe` in OPFS (null when none), with its saved conversation as `savedChat` (null when none). */
const savedProject = (page, nameRe) =>
  page.evaluate(async (src) => {
    const re = new RegExp(src);
    const read = async (dir, name) => JSON.parse(await (await (await dir.getFileHandle(name)).getFile()).text());
    const projects = await (await navigator.storage.getDirectory()).getDirectoryHandle("webpeft-projects");
    for await (const dir of projects.values()) {
      const p = await read(dir, "project.json");
      if (re.test(p.name)) return { ...p, savedChat: p.chat ? await read(dir, p.chat) : null };
    }
    return null;
  }, nameRe.source);

/** Waits until the project named like `nameRe` is saved with `ready(project)` true (it is saved a moment after the work); returns the project. */
async function savedWhen(page, nameRe, ready, what) {
  let last = null;
  for (let tries = 0; tries < 100; tries++) {
    last = await savedProject(page, nameRe);
    if (last && ready(last)) return last;
    await page.waitForTimeout(200);
  }
  throw new Error(`no ${what} saved in the project ${nameRe}: ${JSON.stringify(last)?.slice(0, 500)}; console: ${b.console.slice(-20).join(" | ")}`);
}

/** Starts with the suggested settings, pauses after a step, downloads the GPU job, resumes, and waits for the end. */
async function trainWithPause(page, jobName) {
  await page.getByRole("button", { name: "Start" }).click();
  await waitStatus(page, /^Step [1-9]/, 120_000);
  await page.getByRole("button", { name: "Pause" }).click();
  await waitStatus(page, /^Paused at step/);
  const pausedAt = Number((await trainStatus(page).textContent()).match(/^Paused at step (\d+)/)[1]);
  const job = await download(page, "Continue on a GPU machine (zip)", jobName);
  await page.getByRole("button", { name: "Resume", exact: true }).click();
  await waitStatus(page, /^Finished: \d+ steps/, 1_500_000);
  const steps = Number((await trainStatus(page).textContent()).match(/^Finished: (\d+) steps/)[1]);
  assert.ok(pausedAt >= 1 && pausedAt < steps, `paused at ${pausedAt} of ${steps}`);
  return { job, pausedAt, steps };
}

/** Every tuner.chat call from now on, with what it was given and what it answered. */
const recordChat = (page) =>
  page.evaluate(() => {
    const t = window.webpeftPage.tuner;
    const chat = t.chat.bind(t);
    window.chatCalls = [];
    t.chat = (messages, opts) => {
      const call = { messages: JSON.parse(JSON.stringify(messages)), adapter: opts.adapter, temperature: opts.temperature, maxNewTokens: opts.maxNewTokens };
      window.chatCalls.push(call);
      const reply = chat(messages, opts);
      reply.then((text) => (call.text = text));
      return reply;
    };
  });

test("classification: typed classes, the suggested settings, at least 85% held out, a confusion matrix, the PEFT zip and the GPU job", { timeout: 600_000 }, async () => {
  const { page } = b;
  for (const [i, [name, examples]] of CLASSES.entries()) {
    if (i >= 2) await page.getByRole("button", { name: "Add class" }).click();
    await page.getByLabel(`Class ${i + 1} name`, { exact: true }).fill(name);
    await page.getByLabel(`Class ${i + 1} examples (one per line)`).fill(examples.join("\n"));
  }
  await loadMiniLm(page);
  await page.locator("#data-status").filter({ hasText: /^examples\.csv: CSV, 30 rows; labels cooking, sports, weather \(10 \/ 10 \/ 10 rows\)/ }).waitFor({ timeout: 30_000 });
  await page.locator("#settings-why").filter({ hasText: /^Start trains with settings picked for this model and data: / }).waitFor({ timeout: 30_000 });
  manifest.classification.settings = await page.locator("#settings-why").textContent();

  const { job, pausedAt, steps } = await trainWithPause(page, "classification-gpu-job.zip");
  const results = page.getByRole("region", { name: "How well it classifies the held-out examples" });
  await results.getByRole("table", { name: /^Confusion matrix of the adapted model/ }).waitFor({ timeout: 60_000 });
  const all = await results.getByRole("table", { name: "Per-class accuracy on the held-out examples" }).evaluate((t) => [...t.tFoot.rows[0].cells].map((c) => c.textContent));
  assert.equal(all[0], "All classes");
  const [held, accuracy] = [Number(all[1]), Number(all[3].slice(0, -1))];
  assert.ok(held >= 3, `held out ${held}`);
  assert.ok(accuracy >= 85, `held-out accuracy with the suggested settings: ${accuracy}%`);

  // What the adapted model says for new texts: the target's reader must say the same.
  const texts = ["The referee stopped the game", "Melt the butter in a pan", "Expect sunshine on Sunday"];
  await page.getByLabel("Texts to classify (one per line)").fill(texts.join("\n"));
  await page.getByRole("button", { name: "Compare base and adapted" }).click();
  await page.waitForFunction(() => !document.getElementById("compare").disabled, null, { timeout: 60_000 });
  const predictions = await page.getByRole("table", { name: "Adapted predictions" }).locator("tr[data-probs]").evaluateAll((rows) =>
    rows.map((r) => ({ text: r.cells[0].textContent, label: r.cells[1].textContent, probs: JSON.parse(r.dataset.probs) })),
  );
  assert.deepEqual(predictions.map((p) => p.text), texts);

  const run = (await savedWhen(page, /on all-MiniLM-L6-v2$/, (p) => p.runs.length > 0, "run")).runs.at(-1);
  Object.assign(manifest.classification, {
    model: "models/all-MiniLM-L6-v2",
    adapter: await download(page, "Download adapter", "classification-adapter.zip"),
    gpuJob: job,
    pausedAt,
    steps,
    heldOut: held,
    accuracy,
    losses: Object.fromEntries(run.series.x.map((s, i) => [s, run.series.loss[i]])),
    predictions,
  });
});

test("chat: typed conversations, the suggested settings, a multi-turn chat with the adapter on and off, the PEFT zip, GGUF LoRA and GPU job", { timeout: 1_800_000 }, async () => {
  const { page } = b;
  // The classification work stays in its project; the chat is new work, on another model.
  await page.getByRole("button", { name: "New project" }).click();
  await page.getByLabel(/SmolLM2-135M-Instruct: chat model/).check();
  await page.getByRole("button", { name: "Load model" }).click();
  await page.getByRole("status").filter({ hasText: /^Loaded SmolLM2-135M-Instruct/ }).waitFor({ timeout: 120_000 });
  for (const [c, turns] of CONVERSATIONS.entries()) {
    if (c > 0) await page.getByRole("button", { name: "Add conversation" }).click();
    let n = 0;
    for (const [user, assistant] of turns) {
      for (const [role, text] of [["user", user], ["assistant", assistant]]) {
        n += 1;
        if (n > 2) await page.getByRole("button", { name: `Add turn to conversation ${c + 1}` }).click();
        await page.getByLabel(`Conversation ${c + 1} turn ${n} (${role})`, { exact: true }).fill(text);
      }
    }
  }
  await page.locator("#data-status").filter({ hasText: /^conversations\.jsonl: JSON lines \(chat messages\), 8 rows; / }).waitFor({ timeout: 30_000 });
  await page.locator("#settings-why").filter({ hasText: /^Start trains with settings picked for this model and data: / }).waitFor({ timeout: 30_000 });
  manifest.chat.settings = await page.locator("#settings-why").textContent();

  const started = Date.now();
  const { job, pausedAt, steps } = await trainWithPause(page, "chat-gpu-job.zip");
  manifest.chat.trainSeconds = (Date.now() - started) / 1000;

  // A multi-turn chat, greedy: both sides answer each message from their own history.
  assert.equal(await page.getByRole("slider", { name: "Temperature" }).inputValue(), "0");
  await page.getByLabel("Max new tokens per reply").fill("24");
  await recordChat(page);
  for (const text of CHAT_PROMPTS) {
    await page.getByLabel("Your message").fill(text);
    await page.getByLabel("Your message").press("Enter");
    await page.locator("#chat-status").filter({ hasText: /^Both models answered\.$/ }).waitFor({ timeout: 180_000 });
  }
  const calls = await page.evaluate(() => window.chatCalls);
  assert.deepEqual(calls.map((c) => c.adapter), [false, true, false, true]);
  const replies = (adapter) => calls.filter((c) => c.adapter === adapter).map((c) => c.text);
  // The style shows: the adapted replies are not the base model's.
  assert.notDeepEqual(replies(true), replies(false), "the adapted replies differ from the base model's");
  manifest.chat.calls = calls;
  // The conversation is kept with the project, as the rest of the work is, and so is the run.
  const saved = await savedWhen(page, /^Typed conversations on SmolLM2-135M-Instruct$/, (p) => p.runs.length > 0 && p.savedChat?.base.length === 2 * CHAT_PROMPTS.length, `run and conversation of ${2 * CHAT_PROMPTS.length} messages a side`);
  const run = saved.runs.at(-1);
  Object.assign(manifest.chat, {
    model: "models/SmolLM2-135M-Instruct.Q4_1.gguf",
    adapter: await download(page, "Download adapter", "chat-adapter.zip"),
    gguf: await download(page, "Download for llama.cpp / Ollama (GGUF)", "chat-adapter.gguf"),
    gpuJob: job,
    pausedAt,
    steps,
    losses: Object.fromEntries(run.series.x.map((s, i) => [s, run.series.loss[i]])),
  });
});

test("after a reload: both projects listed, the chat one reopened with its run and conversation", { timeout: 300_000 }, async () => {
  const { page } = b;
  await reloadPage(page);
  const list = page.getByRole("list", { name: "Projects in this browser" });
  await list.getByRole("button", { name: /^Open project / }).first().waitFor({ timeout: 30_000 });
  assert.equal(await list.getByRole("button", { name: /^Open project .* on all-MiniLM-L6-v2$/ }).count(), 1);
  await page.getByRole("button", { name: "Open project Typed conversations on SmolLM2-135M-Instruct" }).click();
  await page.locator("#projects-status").filter({ hasText: /^Opened “Typed conversations on SmolLM2-135M-Instruct”\. .*Its conversation is back under Try it\.$/ }).waitFor({ timeout: 180_000 });
  assert.match(await trainStatus(page).textContent(), new RegExp(`Finished: ${manifest.chat.steps} steps`));
  const shown = await page.getByRole("log", { name: "Adapted model conversation" }).evaluate((log) => [...log.querySelectorAll(".chat-msg .text")].map((m) => m.textContent));
  const calls = manifest.chat.calls.filter((c) => c.adapter);
  assert.deepEqual(shown, calls.flatMap((c) => [c.messages.at(-1).content, c.text]));
  assert.deepEqual(b.console.filter((l) => l.startsWith("[pageerror]") || /Failed to load resource/.test(l)), [], "no page errors or missing files");
});
