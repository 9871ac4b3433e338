// The real core (web/dist) with the loopback Hub (tests/web/hub-server.mjs): tiny
// fixture models load from it on the wasm CPU backend and give the same logits as
// from plain URLs, and an aborted generate really stops the core between tokens on
// the CPU backend, whose tensor reads never yield to the worker's event loop.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { openTestPage, modelUrls, requireBuild, helper, maxAbsDiff, ROOT } from "./harness.mjs";
import { startHub, dirFiles } from "./hub-server.mjs";

let b;
let wp;
let hub;

before(async () => {
  requireBuild();
  b = await openTestPage();
  wp = helper(b.page);
  const only = ["config.json", "tokenizer.json", "model.safetensors"];
  hub = await startHub({
    repos: {
      "test/tiny-llama": { files: dirFiles(join(ROOT, "tests/fixtures/tiny-llama"), only) },
      "test/tiny-bert": { files: dirFiles(join(ROOT, "tests/fixtures/tiny-bert"), only), gated: true },
    },
    tokens: { hf_ok: ["test/tiny-bert"] },
  });
});
after(async () => {
  await b?.close();
  await hub?.close();
});

const TOKENS = [1, 5, 9, 2, 7];

test("real core: a model from the Hub gives the logits of the same files by URL; generate aborts between tokens", { timeout: 10 * 60_000 }, async () => {
  const byUrl = await wp("load", modelUrls("tests/fixtures/tiny-llama"), { backend: "cpu", threads: 1 });
  assert.equal(byUrl.error, undefined, JSON.stringify(byUrl.error));
  const ref = await wp("forward", TOKENS);
  const full = await wp("generate", "hello world", { maxNewTokens: 60 });
  assert.equal(full.error, undefined, JSON.stringify(full.error));

  const fromHub = await wp("loadHub", { hub: "test/tiny-llama" }, { endpoint: hub.url, threads: 1 });
  assert.equal(fromHub.error, undefined, JSON.stringify(fromHub.error));
  assert.equal(fromHub.device.backend, "cpu");
  const logits = await wp("forward", TOKENS);
  assert.equal(maxAbsDiff(Float32Array.from(logits), Float32Array.from(ref)), 0);

  // The same generation, aborted once 2 pieces of text have come: the core stops early.
  const again = await wp("generate", "hello world", { maxNewTokens: 60 });
  assert.equal(again.text, full.text, "generation is deterministic (greedy)");
  assert.ok(full.tokens.length >= 8, `the full run streams enough pieces to abort in the middle (${full.tokens.length})`);
  const g = await wp("generateAbort", "hello world", { maxNewTokens: 60 }, 2);
  assert.equal(g.error?.kind, "aborted", JSON.stringify(g));
  assert.equal(g.late, 0);
  const n = Number(/after (\d+) tokens?/.exec(g.error.message)?.[1]);
  assert.ok(n >= 2 && n < full.tokens.length, `the core stopped after ${n} of ${full.tokens.length} tokens`);
  // And the model is still usable.
  assert.equal((await wp("generate", "hello world", { maxNewTokens: 60 })).text, full.text);
});

test("real core: a gated classifier from the Hub with a token; classify aborts", { timeout: 10 * 60_000 }, async () => {
  const denied = await wp("loadHub", { hub: "test/tiny-bert" }, { endpoint: hub.url });
  assert.equal(denied.error?.kind, "io");
  assert.match(denied.error.message, /gated: pass a token/);
  const ok = await wp("loadHub", { hub: "test/tiny-bert" }, { endpoint: hub.url, token: "hf_ok", threads: 1 });
  assert.equal(ok.error, undefined, JSON.stringify(ok.error));
  const c = await wp("classify", ["a b c", "d e"]);
  assert.equal(c.error, undefined, JSON.stringify(c.error));
  assert.equal(c.length, 2);
  const aborted = await wp("classifyAbort", Array.from({ length: 50 }, (_, i) => `text ${i}`));
  assert.equal(aborted.error?.kind, "aborted", JSON.stringify(aborted));
  assert.deepEqual(await wp("classify", ["a b c", "d e"]), c);
});
