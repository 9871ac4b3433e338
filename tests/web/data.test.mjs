// Training data in the browser: `validateData` runs the core's parser on each
// format (counts, labels, the detected format) and lists bad rows with their
// line numbers, with or without a model; and `run.cancel()` while a Blob of
// training data is still being read stops the run before it starts (kind
// "aborted"), leaving the model and its adapter as they were.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { openTestPage, modelUrls, requireBuild, helper } from "./harness.mjs";

const LLAMA = modelUrls("tests/fixtures/tiny-llama");
let b;
let wp;

before(async () => {
  requireBuild();
  b = await openTestPage();
  wp = helper(b.page);
});
after(async () => {
  await b?.close();
});

/** `Tuner.validateData` (no model) or the loaded tuner's, on a File made in the page. */
function validate(name, text, options = {}, { withModel = false } = {}) {
  return b.page.evaluate(
    async ([name, text, options, withModel]) => {
      const file = new File([text], name);
      try {
        return withModel ? await window.wpTuner().validateData(file, options) : await window.webpeft.Tuner.validateData(file, options);
      } catch (e) {
        return { error: { kind: e.kind, message: e.message, isWebPeftError: e instanceof window.webpeft.WebPeftError } };
      }
    },
    [name, text, options, withModel],
  );
}

const jsonl = (rows) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
const chat = (q, a) => ({ messages: [{ role: "user", content: q }, { role: "assistant", content: a }] });

test("validateData without a model: each format's counts, labels and detected format", { timeout: 5 * 60_000 }, async () => {
  const cases = [
    ["chat.jsonl", jsonl([chat("Hi", "Hello"), chat("Capital of France?", "Paris")]), "jsonl-messages", 2],
    ["qa.jsonl", jsonl([{ prompt: "2+2=", completion: "4" }, { prompt: "", completion: "x" }, { prompt: "a", completion: "b" }]), "jsonl-prompt-completion", 3],
    ["notes.jsonl", jsonl([{ text: "one" }, { text: "two" }]), "jsonl-text", 2],
    ["book.txt", "Once upon a time.\nThe end.\n", "txt", 1],
  ];
  for (const [name, text, format, rows] of cases) {
    const v = await validate(name, text);
    assert.equal(v.error, undefined, JSON.stringify(v.error));
    assert.deepEqual(
      { source: v.source, format: v.format, rows: v.rows, ok: v.ok, problems: v.problems, task: v.task, labels: v.labels, tokens: v.tokens },
      { source: name, format, rows, ok: true, problems: [], task: "causal-lm", labels: null, tokens: null },
      name,
    );
  }
  // Classification, CSV and JSONL: labels in class order, with their counts.
  const csv = await validate("tickets.csv", 'text,label\n"charged twice, again",billing\nit crashes,bug\nrefund please,billing\n');
  assert.equal(csv.format, "csv-text-label");
  assert.equal(csv.task, "seq-cls");
  assert.deepEqual(csv.labels, [{ label: "billing", count: 2 }, { label: "bug", count: 1 }]);
  assert.equal(csv.rows, 3);
  assert.equal(csv.ok, true);
  assert.equal(csv.examples, null, "rows only when asked for");
  // `examples: true`: the rows as the core parsed them (quoted fields, trimmed labels, file order).
  const rows = await validate("rows.csv", 'text,label\n"charged ""twice"", again", billing \nit crashes,bug\n', { examples: true });
  assert.deepEqual(rows.examples, [{ text: 'charged "twice", again', label: "billing" }, { text: "it crashes", label: "bug" }]);
  const labelled = await validate("l.jsonl", jsonl([{ text: "a", label: 10 }, { text: "b", label: 2 }, { text: "c", label: 2 }]));
  assert.equal(labelled.format, "jsonl-text-label");
  assert.deepEqual(labelled.labels, [{ label: "2", count: 2 }, { label: "10", count: 1 }]);
  // A string with the format named, and an array of rows, as train() takes them.
  const s = await b.page.evaluate(() => window.webpeft.Tuner.validateData("text,label\nx,a\ny,b\n", { dataFormat: "csv" }));
  assert.deepEqual([s.source, s.format, s.rows], ["data.csv", "csv-text-label", 2]);
  const arr = await b.page.evaluate(() => window.webpeft.Tuner.validateData([{ prompt: "p", completion: "c" }]));
  assert.deepEqual([arr.source, arr.format, arr.rows], ["data.jsonl", "jsonl-prompt-completion", 1]);
});

test("validateData lists every bad row with its line, as training reports it", { timeout: 5 * 60_000 }, async () => {
  const text = [
    '{"text": "fine", "label": "pos"}',
    "",
    '{"text": broken}',
    '{"text": "no label"}',
    '{"text": "ok", "label": "neg"}',
    '{"text": "", "label": "neg"}',
    '["a list"]',
  ].join("\n");
  const v = await validate("bad.jsonl", text);
  assert.equal(v.ok, false);
  assert.equal(v.format, "jsonl-text-label");
  assert.equal(v.rows, 2, "the good rows are counted");
  assert.deepEqual(v.labels, [{ label: "neg", count: 1 }, { label: "pos", count: 1 }]);
  assert.deepEqual(v.problems.map((p) => [p.line, p.kind, p.source]), [[3, "input", "bad.jsonl"], [4, "input", "bad.jsonl"], [6, "input", "bad.jsonl"], [7, "input", "bad.jsonl"]]);
  assert.match(v.problems[0].message, /^bad\.jsonl: line 3: invalid JSON/);
  assert.equal(v.problems[1].message, "bad.jsonl: line 4: missing field 'label'");
  assert.equal(v.problems[2].message, "bad.jsonl: line 6: 'text' is empty");
  assert.equal(v.problems[3].message, "bad.jsonl: line 7: expected a JSON object, found a list");

  // The first problem is the one training would stop at (same message, same line).
  assert.equal((await wp("load", LLAMA, { backend: "cpu", threads: 1 })).error, undefined);
  const started = await b.page.evaluate(async (text) => {
    try {
      await window.wpTuner().train(new File([text], "bad.jsonl"), { task: "seq-cls", method: "lora", steps: 1 }).done;
      return { ok: true };
    } catch (e) {
      return { kind: e.kind, message: e.message, line: e.line };
    }
  }, text);
  assert.deepEqual(started, { kind: "input", message: v.problems[0].message, line: 3 });

  // CSV: a quote never closed leaves no records to check (the file cannot be split into rows).
  const csv = await validate("t.csv", 'text,label\ngood,a\nno label\n"x",\nfine,b\n"open,a\n');
  assert.deepEqual(csv.problems.map((p) => [p.line, p.message]), [[6, "t.csv: line 6: a quoted field is never closed"]]);
  assert.deepEqual([csv.format, csv.rows], [null, 0]);
  // Rows with the wrong number of fields or an empty label.
  const csv2 = await validate("t.csv", 'text,label\ngood,a\nno label\n"x",\nfine,b\n');
  assert.deepEqual(csv2.problems.map((p) => [p.line, p.message]), [
    [3, "t.csv: line 3: expected 2 fields as in the header, found 1"],
    [4, "t.csv: line 4: 'label' is empty"],
  ]);
  assert.deepEqual([csv2.rows, csv2.format], [2, "csv-text-label"]);

  // Problems about the whole file have no line; one label is not enough to classify.
  const one = await validate("one.csv", "text,label\na,x\nb,x\n");
  assert.deepEqual(one.problems.map((p) => [p.line, p.message]), [[null, "one.csv: every row has the label 'x'; classification needs at least two labels"]]);
  const empty = await validate("e.jsonl", "\n\n");
  assert.deepEqual(empty.problems.map((p) => [p.line, p.message]), [[null, "e.jsonl: contains no examples"]]);
  const arr = await validate("a.json", '[{"text": "a"}]');
  assert.equal(arr.format, null);
  assert.match(arr.problems[0].message, /is a JSON array/);
  const latin1 = await b.page.evaluate(async () => {
    const v = await window.webpeft.Tuner.validateData(new File([new Uint8Array([0x7b, 0x7d, 0x0a, 0xff])], "x.jsonl"));
    return v.problems;
  });
  assert.deepEqual(latin1.map((p) => [p.line, p.message]), [[2, "x.jsonl: line 2: not valid UTF-8 text (at byte 3)"]]);
  // The task asked for must fit the rows.
  const wrongTask = await validate("qa.jsonl", jsonl([{ prompt: "p", completion: "c" }]), { task: "seq-cls" });
  assert.match(wrongTask.problems[0].message, /^qa\.jsonl: has no labels \(jsonl-prompt-completion\); classification needs/);
  // Wrong arguments are typed errors, not problems.
  const bad = await validate("x.jsonl", "{}", { seqLen: 1 });
  assert.deepEqual([bad.error?.kind, bad.error?.isWebPeftError], ["input", true]);
  assert.match(bad.error.message, /^seqLen: /);
});

test("tuner.validateData tokenises with the model's tokenizer: token counts, truncation, and the model untouched", { timeout: 5 * 60_000 }, async () => {
  assert.equal((await wp("load", LLAMA, { backend: "cpu", threads: 1 })).error, undefined);
  const before = await wp("forward", [1, 2, 3]);
  const rows = [{ prompt: "Q: ", completion: " A." }, { prompt: "Q: ", completion: " blue".repeat(40) }];
  const v = await validate("qa.jsonl", jsonl(rows), { seqLen: 16 }, { withModel: true });
  assert.equal(v.ok, true, JSON.stringify(v.problems));
  assert.equal(v.task, "causal-lm");
  assert.equal(v.tokens.seqLen, 16);
  assert.equal(v.tokens.examples, 2);
  assert.ok(v.tokens.longest > 16 && v.tokens.total > v.tokens.longest, JSON.stringify(v.tokens));
  const ids = await b.page.evaluate(async (rows) => {
    const t = window.wpTuner();
    let n = 0;
    let longest = 0;
    for (const r of rows) {
      // Prompt with specials, completion without: training's encoding (this tokenizer names no
      // eos token, so none is added).
      const len = (await t.tokenize(r.prompt)).length + (await t.tokenize(r.completion, { specialTokens: false })).length;
      n += len;
      longest = Math.max(longest, len);
    }
    return { n, longest };
  }, rows);
  assert.deepEqual([v.tokens.total, v.tokens.longest], [ids.n, ids.longest]);
  assert.deepEqual(v.warnings, ["1 of 2 examples were longer than --seq-len 16 tokens and were truncated"]);
  // Chat rows need a chat template, which this tokenizer lacks: training's message, no line.
  const c = await validate("chat.jsonl", jsonl([chat("Hi", "Hello")]), {}, { withModel: true });
  assert.equal(c.ok, false);
  assert.match(c.problems[0].message, /^chat\.jsonl: has chat messages but the tokenizer \(tokenizer\.json\) has no chat template/);
  // The model is as it was.
  assert.deepEqual(await wp("forward", [1, 2, 3]), before);
});

test("tuner.suggestOptions: one-button settings for the model and the data's rows, in train's option names, with why", { timeout: 5 * 60_000 }, async () => {
  assert.equal((await wp("load", LLAMA, { backend: "cpu", threads: 1 })).error, undefined);
  const s = await b.page.evaluate(async () => {
    const t = window.wpTuner();
    const small = await t.suggestOptions({ rows: 60, task: "seq-cls" });
    const lm = await t.suggestOptions({ rows: 40 });
    // A caller that holds out its own rows (the page's per-class split).
    const own = await t.suggestOptions({ rows: 60, task: "seq-cls", heldOut: 6 });
    let bad;
    try {
      await t.suggestOptions({ rows: 0 });
    } catch (e) {
      bad = { kind: e.kind, message: e.message };
    }
    let badHeld;
    try {
      await t.suggestOptions({ rows: 60, heldOut: -1 });
    } catch (e) {
      badHeld = { kind: e.kind, message: e.message };
    }
    return { small, lm, own, bad, badHeld };
  });
  // 48 training rows in batches of 8: 10 passes make 60 steps; a fifth held out.
  assert.deepEqual(
    { task: s.small.options.task, method: s.small.options.method, r: s.small.options.r, lr: s.small.options.lr, epochs: s.small.options.epochs, batch: s.small.options.batch, evalSplit: s.small.options.evalSplit },
    { task: "seq-cls", method: "lora", r: 8, lr: 5e-3, epochs: 10, batch: 8, evalSplit: 0.2 },
  );
  assert.ok(!("adapter" in s.small.options) && !("dp" in s.small.options), "unset options are left out");
  assert.match(s.small.why, /new classifier head.*10 passes over 48 examples \(60 steps of 8.*12 held out/);
  assert.match(s.own.why, /9 passes over 54 examples \(63 steps of 8.*, 6 held out/);
  assert.equal(s.own.options.evalSplit, 0.1);
  assert.equal(s.badHeld?.kind, "input", JSON.stringify(s.badHeld));
  // The model's own task (tiny-llama is a language model) when none is given.
  assert.equal(s.lm.options.task, "causal-lm");
  assert.equal(s.bad.kind, "input");
});

test("run.cancel() while a Blob of training data is read: rejects with 'aborted', the model and adapter kept", { timeout: 5 * 60_000 }, async () => {
  assert.equal((await wp("load", LLAMA, { backend: "cpu", threads: 1 })).error, undefined);
  const r = await b.page.evaluate(async () => {
    const t = window.wpTuner();
    const row = JSON.stringify({ prompt: "Q: ", completion: " A." }) + "\n";
    const opts = { task: "causal-lm", method: "lora", r: 4, steps: 1, batch: 1, seqLen: 32 };
    // A first run leaves an adapter on the model.
    const first = await t.train(row.repeat(4), opts).done;
    const adapter = await t.exportAdapterFiles();
    const logits = Array.from(await t.forward([1, 2, 3]));
    // A Blob of some megabytes: the worker is still reading it when the cancel comes.
    const blob = new Blob(Array.from({ length: 64 }, () => row.repeat(1000)), { type: "application/jsonl" });
    const run = t.train(blob, { ...opts, steps: 50, adapter: "new" });
    const events = [];
    const iterated = (async () => {
      for await (const e of run.events) events.push(e.event);
    })().then(() => "ended", (e) => e.kind);
    await run.cancel();
    const outcome = await Promise.race([
      run.done.then((s) => ({ resolved: s }), (e) => ({ kind: e.kind, message: e.message, isWebPeftError: e instanceof window.webpeft.WebPeftError })),
      new Promise((res) => setTimeout(() => res({ timedOut: true }), 60_000)),
    ]);
    const after = await t.exportAdapterFiles();
    const same = ["adapter_config.json", "adapter_model.safetensors"].every((k) => after[k].length === adapter[k].length && after[k].every((x, i) => x === adapter[k][i]));
    return { first: first.reason, outcome, iterated: await iterated, events, same, logitsSame: JSON.stringify(Array.from(await t.forward([1, 2, 3]))) === JSON.stringify(logits) };
  });
  assert.equal(r.first, "completed");
  assert.equal(r.outcome.timedOut, undefined, "the run settled");
  assert.equal(r.outcome.resolved, undefined, `the run must not start: ${JSON.stringify(r.outcome)}, events ${r.events}`);
  assert.deepEqual([r.outcome.kind, r.outcome.isWebPeftError], ["aborted", true], JSON.stringify(r.outcome));
  assert.equal(r.iterated, "aborted", "iterating the events throws the same error");
  assert.deepEqual(r.events, [], "no event: nothing started");
  assert.ok(r.same, "the adapter is the first run's");
  assert.ok(r.logitsSame, "the model gives the same logits");
  // And the tuner still trains.
  const again = await b.page.evaluate(async () => (await window.wpTuner().train(JSON.stringify({ prompt: "Q: ", completion: " B." }), { task: "causal-lm", method: "lora", steps: 1, batch: 1, seqLen: 32, adapter: "new" }).done).reason);
  assert.equal(again, "completed");
});
