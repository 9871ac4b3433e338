// Day-one API (issue #12): tokenize against the native CLI, loadAdapter(zip Blob)
// round trip, and chat (multi-turn, system prompt, async iteration) on SmolLM2.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { zipSync, strToU8 } from "fflate";
import { openTestPage, modelUrls, requireBuild, helper, inPageOf, maxAbsDiff, ROOT, WEBPEFT_BIN } from "./harness.mjs";

const execFileP = promisify(execFile);
const TINY = "tests/fixtures/tiny-llama";
const GGUF = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const DATA = join(ROOT, "tests/fixtures/data/prompt_completion.jsonl");
const LONG = { timeout: 20 * 60_000 };
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

/** Runs f(tuner, arg) in the page (harness.inPageOf). */
const inPage = (f, arg) => inPageOf(b.page)(f, arg);

test("tokenize gives the native CLI's ids (tiny-llama), with and without special tokens; bad arguments are typed", LONG, async () => {
  const loaded = await wp("load", modelUrls(TINY), { backend: "cpu" });
  assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
  for (const text of ["Hello world, héllo!", "The quick brown fox\njumps 123 times."]) {
    const { stdout } = await execFileP(WEBPEFT_BIN, ["tokenize", join(ROOT, TINY), "--text", text], { cwd: ROOT });
    const native = JSON.parse(stdout.trim());
    const r = await inPage((t, x) => t.tokenize(x), text);
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.deepEqual(r.value, native, `tokenize(${JSON.stringify(text)})`);
    assert.ok(Array.isArray(r.value));
    const plain = await inPage((t, x) => t.tokenize(x, { specialTokens: false }), text);
    assert.equal(plain.error, undefined, JSON.stringify(plain.error));
    // (tiny-llama's tokenizer adds no BOS, so these may be equal.)
    assert.ok(plain.value.length <= native.length, `no more ids without special tokens: ${native} vs ${plain.value}`);
  }
  const bad = await inPage((t) => t.tokenize(42));
  assert.equal(bad.error?.kind, "input", JSON.stringify(bad));
  const badOpt = await inPage((t) => t.tokenize("x", { specialTokens: "yes" }));
  assert.equal(badOpt.error?.kind, "input", JSON.stringify(badOpt));
});

test("loadAdapter takes the zip Blob exportAdapter returns: same logits after a reset; a zip without the files is a format error", LONG, async () => {
  await b.close();
  b = await openTestPage();
  wp = helper(b.page);
  const loaded = await wp("load", modelUrls(TINY), { backend: "cpu" });
  assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
  await b.page.setInputFiles("#data", DATA);
  const r = await wp("train", { task: "causal-lm", method: "lora", r: 4, alpha: 8, steps: 3, lr: 1e-2, batch: 4, seqLen: 16, seed: 0 });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  const TOKENS = [1, 5, 9, 17, 33];
  const out = await inPage(async (t, ids) => {
    const trained = Array.from(await t.forward(ids));
    const zip = await t.exportAdapter();
    await t.resetAdapter();
    const base = Array.from(await t.forward(ids));
    await t.loadAdapter(zip);
    const reloaded = Array.from(await t.forward(ids));
    return { trained, base, reloaded, type: zip.type };
  }, TOKENS);
  assert.equal(out.error, undefined, JSON.stringify(out.error));
  const { trained, base, reloaded } = out.value;
  assert.ok(maxAbsDiff(Float32Array.from(trained), Float32Array.from(base)) > 1e-5, "the trained adapter changes the logits");
  const diff = maxAbsDiff(Float32Array.from(trained), Float32Array.from(reloaded));
  console.log(`loadAdapter(zip Blob): max abs diff ${diff.toExponential(2)} over ${trained.length} values`);
  assert.ok(diff <= 1e-6, `reloaded logits differ by ${diff}`);

  // A zip without the weights: a format error that names the missing file.
  const partial = Array.from(zipSync({ "adapter_config.json": strToU8("{}"), "webpeft.json": strToU8("{}") }));
  const e = await inPage((t, bytes) => t.loadAdapter(new Blob([Uint8Array.from(bytes)], { type: "application/zip" })), partial);
  assert.equal(e.error?.kind, "format", JSON.stringify(e));
  assert.match(e.error.message, /adapter_model\.safetensors/);
  const empty = Array.from(zipSync({ "README.md": strToU8("hi") }));
  const e2 = await inPage((t, bytes) => t.loadAdapter(new Blob([Uint8Array.from(bytes)])), empty);
  assert.equal(e2.error?.kind, "format", JSON.stringify(e2));
  assert.match(e2.error.message, /adapter_config\.json/);

  // A zip bomb: adapter_model.safetensors declares 3 GiB unpacked. Refused before anything is
  // inflated, with a format error naming the file; the adapter loaded above stays usable.
  const bomb = declareSize(zipSync({ "adapter_config.json": strToU8("{}"), "adapter_model.safetensors": new Uint8Array(64) }), "adapter_model.safetensors", 3 * 2 ** 30);
  const e3 = await inPage((t, bytes) => t.loadAdapter(new Blob([Uint8Array.from(bytes)], { type: "application/zip" })), Array.from(bomb));
  assert.equal(e3.error?.kind, "format", JSON.stringify(e3));
  assert.match(e3.error.message, /adapter_model\.safetensors declares 3221225472 bytes unpacked/);
  const after = await inPage(async (t, ids) => Array.from(await t.forward(ids)), TOKENS);
  assert.equal(after.error, undefined, JSON.stringify(after.error));
  assert.ok(maxAbsDiff(Float32Array.from(after.value), Float32Array.from(reloaded)) <= 1e-6, "the loaded adapter is kept");
});

/** Rewrites the unpacked size `file` declares in a zip's local and central headers. */
function declareSize(zip, file, size) {
  const out = Uint8Array.from(zip);
  const dv = new DataView(out.buffer);
  const name = new TextEncoder().encode(file);
  let patched = 0;
  for (let o = 0; o + 46 <= out.length; o++) {
    const sig = dv.getUint32(o, true);
    // Local header: name length at 26, name at 30, size at 22. Central: 28, 46, 24.
    const [nameLen, nameAt, sizeAt] = sig === 0x04034b50 ? [26, 30, 22] : sig === 0x02014b50 ? [28, 46, 24] : [];
    if (nameLen === undefined || dv.getUint16(o + nameLen, true) !== name.length) continue;
    if (!name.every((c, i) => out[o + nameAt + i] === c)) continue;
    dv.setUint32(o + sizeAt, size, true);
    patched++;
  }
  assert.equal(patched, 2, "the local and the central header");
  return out;
}

test("chat on SmolLM2: one user message equals generate({chat: true}); a system message changes the prompt; async iteration and onToken see the pieces", { timeout: 30 * 60_000 }, async () => {
  assert.ok(existsSync(join(ROOT, GGUF)), `${GGUF} is missing: run bash scripts/setup.sh`);
  await b.close();
  b = await openTestPage();
  wp = helper(b.page);
  const loaded = await wp("load", [`/${GGUF}`], { backend: "cpu" });
  assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
  const Q = "What is 2+2?";
  const N = 6;
  const r = await inPage(async (t, [q, n]) => {
    const generated = await t.generate(q, { chat: true, maxNewTokens: n });
    const tokens = [];
    const chatted = await t.chat([{ role: "user", content: q }], { maxNewTokens: n, onToken: (p) => tokens.push(p) });
    const pieces = [];
    for await (const p of t.chat([{ role: "user", content: q }], { maxNewTokens: n })) pieces.push(p);
    const plain = await t.renderChat([{ role: "user", content: q }]);
    const sys = await t.renderChat([{ role: "system", content: "You are a pirate." }, { role: "user", content: q }]);
    const multi = await t.chat(
      [{ role: "system", content: "You are a pirate." }, { role: "user", content: q }, { role: "assistant", content: "Arr, 4." }, { role: "user", content: "And 3+3?" }],
      { maxNewTokens: n },
    );
    return { generated, chatted, tokens, pieces, plain, sys, multi };
  }, [Q, N]);
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  const v = r.value;
  console.log(`chat: ${JSON.stringify(v.chatted)}; multi-turn: ${JSON.stringify(v.multi)}`);
  assert.ok(v.generated.length > 0);
  assert.equal(v.chatted, v.generated);
  assert.equal(v.tokens.join(""), v.chatted);
  assert.equal(v.pieces.join(""), v.chatted);
  assert.ok(v.pieces.length > 1, `pieces: ${JSON.stringify(v.pieces)}`);
  assert.ok(v.sys.includes("You are a pirate."), v.sys);
  assert.notEqual(v.sys, v.plain);
  assert.ok(typeof v.multi === "string");

  // Abort, and argument checks.
  const ab = await inPage(async (t) => {
    const c = new AbortController();
    let n = 0;
    const pieces = [];
    try {
      for await (const p of t.chat([{ role: "user", content: "Count to fifty." }], { maxNewTokens: 64, signal: c.signal })) {
        pieces.push(p);
        if (++n === 2) c.abort();
      }
    } catch (e) {
      return { kind: e.kind, n: pieces.length };
    }
    return { kind: null };
  });
  assert.equal(ab.error, undefined, JSON.stringify(ab.error));
  assert.equal(ab.value.kind, "aborted", JSON.stringify(ab.value));
  for (const [args, what] of [
    [[], "messages"],
    [[[{ role: "bot", content: "x" }]], "role"],
    [[[{ role: "user", content: 3 }]], "content"],
    [[[{ role: "user", content: "x" }], { maxNewTokens: 0 }], "maxNewTokens"],
  ]) {
    const e = await inPage((t, a) => t.chat(...a), args);
    assert.equal(e.error?.kind, "input", `${what}: ${JSON.stringify(e)}`);
  }
});
