// Loading from a Hugging Face Hub, cancellation and typed argument errors, against
// a local stand-in for the Hub (tests/web/hub-server.mjs: the Hub's URL scheme and
// headers, 302s to a "CDN" on another loopback port, gated/private repositories).
// The package's own machinery runs against the mock core (tests/web/mock), so these
// tests need no wasm build; tests/web/abort.test.mjs checks generation abort on the real core.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { buildMock, openTestPage, ROOT } from "./harness.mjs";
import { startHub, dirFiles } from "./hub-server.mjs";

const TINY = join(ROOT, "tests/fixtures/tiny-llama");
const tinyFiles = () => dirFiles(TINY, ["config.json", "tokenizer.json", "model.safetensors", "generation_config.json"]);
const BIG = randomBytes(4 * 1024 * 1024);

let b;
let hub;
const wp = (name, ...args) => b.page.evaluate(([n, a]) => window.wp[n](...a), [name, args]);

before(async () => {
  const dist = await buildMock();
  b = await openTestPage({ dist });
  const sharded = dirFiles(join(ROOT, "tests/fixtures/tiny-llama-sharded"));
  delete sharded["reference.safetensors"];
  const cfg = Buffer.from(JSON.stringify({ model_type: "llama", vocab_size: 32 }));
  hub = await startHub({
    repos: {
      "test/tiny-llama": { files: tinyFiles() },
      "test/sharded": { files: sharded },
      "test/gated": { files: tinyFiles(), gated: true },
      "test/private": { files: tinyFiles(), private: true },
      "test/bad-index": { files: { "config.json": cfg, "tokenizer.json": cfg, "model.safetensors.index.json": Buffer.from("{ not json") } },
      "test/evil-index": {
        files: { "config.json": cfg, "tokenizer.json": cfg, "model.safetensors.index.json": Buffer.from(JSON.stringify({ weight_map: { "a.weight": "../../etc/passwd.safetensors" } })) },
      },
      "test/gguf": {
        files: { "README.md": Buffer.from("# gguf"), "model.Q4_0.gguf": randomBytes(3000), "model.Q8_0.gguf": randomBytes(5000), "config.json": cfg },
      },
      "test/big": { files: { "config.json": cfg, "tokenizer.json": cfg, "model.safetensors": BIG } },
    },
    tokens: { hf_llama_ok: ["test/gated", "test/private"], hf_no_access: [] },
    slow: { "model.safetensors": 60 },
  });
});
after(async () => {
  await b?.close();
  await hub?.close();
});

/** Requests the hub and the CDN saw during `f`. */
async function requestsDuring(f) {
  const n = hub.log.length;
  const r = await f();
  return { r, log: hub.log.slice(n) };
}

const resolves = (log) => log.filter((l) => l.server === "hub" && l.method === "GET" && l.path.includes("/resolve/"));

test("hub: load resolves the revision to a commit, follows CDN redirects, and caches by commit", async () => {
  const endpoint = hub.url;
  await wp("clearCache");
  const repo = "test/tiny-llama";
  const first = await requestsDuring(() => wp("loadHub", { hub: repo }, { endpoint }));
  assert.equal(first.r.error, undefined, JSON.stringify(first.r.error));
  assert.deepEqual(first.r.progressFiles.sort(), ["config.json", "model.safetensors", "tokenizer.json"]);
  const sha1 = hub.head(repo);
  assert.ok(first.log.some((l) => l.path === `/api/models/${repo}/revision/main`), "the revision is resolved through the API");
  assert.deepEqual(resolves(first.log).map((l) => l.path).sort(), ["config.json", "model.safetensors", "tokenizer.json"].map((f) => `/${repo}/resolve/${sha1}/${f}`));
  // model.safetensors is "LFS": the hub redirected it to the CDN, which served it.
  assert.ok(first.log.some((l) => l.server === "cdn" && l.method === "GET" && l.path.startsWith("/blobs/")), "the CDN served the large file");

  // Same commit: everything from Cache Storage, only the revision is asked for.
  const second = await requestsDuring(() => wp("loadHub", { hub: repo }, { endpoint }));
  assert.equal(second.r.error, undefined, JSON.stringify(second.r.error));
  assert.deepEqual(resolves(second.log), []);
  assert.ok(!second.log.some((l) => l.server === "cdn"));

  // The repository moves on: the new commit's files are fetched, the old commit's are dropped.
  const files = tinyFiles();
  files["config.json"] = Buffer.from(JSON.stringify({ ...JSON.parse(files["config.json"]), note: "v2" }));
  const sha2 = hub.update(repo, files);
  assert.notEqual(sha2, sha1);
  const third = await requestsDuring(() => wp("loadHub", { hub: repo }, { endpoint }));
  assert.equal(third.r.error, undefined, JSON.stringify(third.r.error));
  assert.deepEqual(resolves(third.log).map((l) => l.path).sort(), ["config.json", "model.safetensors", "tokenizer.json"].map((f) => `/${repo}/resolve/${sha2}/${f}`));
  const keys = await b.page.evaluate(async () => (await (await caches.open("webpeft-models")).keys()).map((r) => r.url));
  assert.ok(keys.some((k) => k.includes(sha2)), "the new commit is cached");
  assert.ok(!keys.some((k) => k.includes(sha1)), `the old commit's files are dropped: ${keys.join(", ")}`);

  // A pinned commit loads that commit.
  const pinned = await requestsDuring(() => wp("loadHub", { hub: repo, revision: sha1 }, { endpoint }));
  assert.equal(pinned.r.error, undefined, JSON.stringify(pinned.r.error));
  assert.ok(resolves(pinned.log).every((l) => l.path.includes(`/resolve/${sha1}/`)) && resolves(pinned.log).length === 3);
});

test("hub: sharded checkpoints, GGUF listing and clearCache", async () => {
  const endpoint = hub.url;
  const sh = await wp("loadHub", { hub: "test/sharded" }, { endpoint });
  assert.equal(sh.error, undefined, JSON.stringify(sh.error));
  assert.deepEqual(
    sh.progressFiles.filter((f) => f.endsWith(".safetensors")).sort(),
    ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"],
  );

  const list = await wp("listFiles", "test/gguf", { endpoint, suffix: ".GGUF" });
  assert.equal(list.error, undefined, JSON.stringify(list.error));
  assert.equal(list.commit, hub.head("test/gguf"));
  assert.deepEqual(list.files, [
    { path: "model.Q4_0.gguf", size: 3000 },
    { path: "model.Q8_0.gguf", size: 5000 },
  ]);
  const all = await wp("listFiles", "test/gguf", { endpoint });
  assert.equal(all.files.length, 4);
  // A repository with only GGUF files and no `file`: the error lists them.
  const noFile = await wp("loadHub", { hub: "test/gguf" }, { endpoint });
  assert.equal(noFile.error?.kind, "io");
  assert.match(noFile.error.message, /model\.Q4_0\.gguf, model\.Q8_0\.gguf \(pass one as `file`\)/);

  // clearCache for one repository, then everything: the next load downloads again.
  assert.ok((await wp("clearCache", "test/sharded")).removed >= 5);
  const again = await requestsDuring(() => wp("loadHub", { hub: "test/sharded" }, { endpoint }));
  assert.equal(resolves(again.log).length, 6);
  assert.ok((await wp("clearCache")).removed > 0);
  assert.equal((await wp("clearCache")).removed, 0);
});

test("hub: 401/403/404 and malformed indexes are typed errors naming the repository and file", async () => {
  const endpoint = hub.url;
  const load = (source, opts = {}) => wp("loadHub", source, { endpoint, ...opts });

  const gated = await load({ hub: "test/gated" });
  assert.equal(gated.error?.kind, "io");
  assert.ok(gated.error.isWebPeftError);
  assert.equal(gated.error.source, "test/gated/config.json");
  assert.match(gated.error.message, /^test\/gated\/config\.json: HTTP 401.*gated: pass a token/);

  const noAccess = await load({ hub: "test/gated" }, { token: "hf_no_access" });
  assert.equal(noAccess.error?.kind, "io");
  assert.match(noAccess.error.message, /test\/gated\/config\.json: HTTP 403.*GatedRepo.*accept the model's conditions/);

  const withToken = await requestsDuring(() => load({ hub: "test/gated" }, { token: "hf_llama_ok" }));
  assert.equal(withToken.r.error, undefined, JSON.stringify(withToken.r.error));
  assert.ok(resolves(withToken.log).every((l) => l.token === "hf_llama_ok"), "the token goes to the hub");
  const cdn = withToken.log.filter((l) => l.server === "cdn" && l.method === "GET");
  assert.ok(cdn.length > 0 && cdn.every((l) => !l.auth), "the browser does not forward the token across the redirect to the CDN");

  const priv = await load({ hub: "test/private" });
  assert.equal(priv.error?.kind, "io");
  assert.match(priv.error.message, /^test\/private: HTTP 401.*RepoNotFound.*private: pass a token/);
  assert.equal((await load({ hub: "test/private" }, { token: "hf_llama_ok" })).error, undefined);

  const badToken = await load({ hub: "test/tiny-llama" }, { token: "hf_wrong" });
  assert.match(badToken.error?.message ?? "", /HTTP 401.*token was refused/);

  const missing = await load({ hub: "test/nope" }, { token: "hf_no_access" });
  assert.equal(missing.error?.kind, "io");
  assert.match(missing.error.message, /^test\/nope: HTTP 404.*RepoNotFound.*does not exist/);

  const rev = await load({ hub: "test/tiny-llama", revision: "v9" });
  assert.match(rev.error?.message ?? "", /HTTP 404.*RevisionNotFound.*revision "v9" does not exist/);

  const entry = await load({ hub: "test/gguf", file: "model.Q9_9.gguf" });
  assert.equal(entry.error?.kind, "io");
  assert.equal(entry.error.source, "test/gguf/model.Q9_9.gguf");
  assert.match(entry.error.message, /HTTP 404.*EntryNotFound.*not in the repository at revision "main"/);

  const index = await load({ hub: "test/bad-index" });
  assert.equal(index.error?.kind, "format", JSON.stringify(index.error));
  assert.equal(index.error.source, "test/bad-index/model.safetensors.index.json");
  assert.match(index.error.message, /not valid JSON/);
  const evil = await load({ hub: "test/evil-index" });
  assert.equal(evil.error?.kind, "format");
  assert.match(evil.error.message, /weight_map\["a\.weight"\].*not a \.safetensors file name/);

  // No hub at the endpoint at all.
  const down = await wp("loadHub", { hub: "test/x" }, { endpoint: "http://127.0.0.1:9" });
  assert.equal(down.error?.kind, "io");
  assert.match(down.error.message, /could not fetch http:\/\/127\.0\.0\.1:9\/api\/models\/test\/x\/revision\/main/);
  assert.equal(await wp("alive"), 2);
});

test("hub: a cached model loads when the hub cannot be reached", async () => {
  const local = await startHub({ repos: { "test/offline": { files: tinyFiles() } } });
  try {
    assert.equal((await wp("loadHub", { hub: "test/offline" }, { endpoint: local.url })).error, undefined);
  } finally {
    await local.close();
  }
  const r = await wp("loadHub", { hub: "test/offline" }, { endpoint: local.url });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  assert.deepEqual(r.progressFiles.sort(), ["config.json", "model.safetensors", "tokenizer.json"]);
});

test("abort: a download stops when the signal fires", async () => {
  await wp("clearCache");
  const t0 = hub.cdnClosed.length;
  const r = await wp("loadAbortAfter", { hub: "test/big" }, { endpoint: hub.url }, "model.safetensors", 256 * 1024);
  assert.equal(r.error?.kind, "aborted", JSON.stringify(r));
  assert.ok(r.error.isWebPeftError);
  assert.ok(r.msAfterAbort < 1000, `rejected ${r.msAfterAbort} ms after the abort`);
  // The whole file takes about 4 s at this pace; the CDN sees the connection dropped.
  const deadline = Date.now() + 3000;
  while (hub.cdnClosed.length === t0 && Date.now() < deadline) await new Promise((ok) => setTimeout(ok, 50));
  assert.deepEqual(hub.cdnClosed.slice(t0), ["model.safetensors"]);
  // Nothing half-downloaded was cached.
  const keys = await b.page.evaluate(async () => (await (await caches.open("webpeft-models")).keys()).map((k) => k.url));
  assert.ok(!keys.some((k) => k.endsWith("/model.safetensors")), keys.join(", "));

  // An already aborted signal: no request at all.
  const before = hub.log.length;
  const pre = await b.page.evaluate(async (endpoint) => {
    try {
      await window.webpeft.Tuner.load({ hub: "test/big" }, { endpoint, backend: "cpu", signal: AbortSignal.abort() });
    } catch (e) {
      return { kind: e.kind, typed: e instanceof window.webpeft.WebPeftError };
    }
  }, hub.url);
  assert.deepEqual(pre, { kind: "aborted", typed: true });
  assert.equal(hub.log.length, before);
});

test("abort: generate stops between tokens on a core that never yields; classify too", async () => {
  const l = await wp("loadHub", { hub: "test/tiny-llama" }, { endpoint: hub.url });
  assert.equal(l.error, undefined, JSON.stringify(l.error));
  // The mock core, like the CPU backend, runs every token without yielding unless the
  // token callback's Promise makes it wait: without that, the abort would only be seen
  // after all 100000 tokens.
  const g = await wp("generateAbort", "hi", { maxNewTokens: 100000 }, 3);
  assert.equal(g.error?.kind, "aborted", JSON.stringify(g));
  assert.equal(g.tokens, 3);
  assert.equal(g.late, 0, "no token callback after the abort");
  const n = Number(/after (\d+) tokens/.exec(g.error.message)?.[1]);
  assert.ok(n >= 3 && n < 1000, `the core stopped after ${n} tokens`);
  assert.ok(g.msAfterAbort < 2000);
  // The worker is free again.
  assert.equal((await wp("generate", "hi", { maxNewTokens: 2 })).text, " t0 t1");

  const c = await wp("classifyAbort", ["a", "b", "c"]);
  assert.equal(c.error?.kind, "aborted", JSON.stringify(c));
  // An already aborted signal: refused before it is sent.
  const pre = await wp("classify", ["a"], { signal: "__pre_aborted__" });
  assert.equal(pre.error?.kind, "aborted", JSON.stringify(pre));
});

test("abort: a signal cancels a training run as cancel() does", async () => {
  assert.equal((await wp("loadHub", { hub: "test/tiny-llama" }, { endpoint: hub.url })).error, undefined);
  const r = await b.page.evaluate(async () => {
    const t = window.wpTuner();
    const data = [{ text: "a" }, { text: "b" }];
    const opts = { task: "causal-lm", method: "lora", steps: 1000, mock_step_ms: 10 };
    // Aborted after the first step.
    const c1 = new AbortController();
    const run1 = t.train(data, opts, undefined, { signal: c1.signal });
    for await (const e of run1.events) if (e.event === "step") c1.abort();
    const s1 = await run1.done;
    // Aborted at once, before the worker has opened the run (it is still reading the Blob):
    // nothing starts, and done rejects with kind "aborted".
    const c2 = new AbortController();
    const blob = new Blob(['{"text": "a"}\n{"text": "b"}\n']);
    const run2 = t.train(blob, { ...opts, dataFormat: "jsonl" }, undefined, { signal: c2.signal });
    c2.abort();
    const s2 = await run2.done.then((s) => s.reason, (e) => e.kind);
    // Already aborted: no run.
    let s3;
    try {
      await t.train(data, opts, undefined, { signal: AbortSignal.abort() }).done;
    } catch (e) {
      s3 = e.kind;
    }
    return { s1: [s1.reason, s1.steps], s2, s3 };
  });
  assert.equal(r.s1[0], "cancelled");
  assert.ok(r.s1[1] >= 1 && r.s1[1] < 100, JSON.stringify(r));
  assert.equal(r.s2, "aborted");
  assert.equal(r.s3, "aborted");
});

test("every public method turns a wrong argument into a WebPeftError of kind input", async () => {
  const check = async (method, argLists) => {
    const r = await wp("badCalls", method, argLists);
    r.forEach((e, i) => {
      assert.equal(e.isWebPeftError, true, `${method}(${JSON.stringify(argLists[i])}) -> ${JSON.stringify(e)}`);
      assert.equal(e.kind, "input", `${method}(${JSON.stringify(argLists[i])}) -> ${JSON.stringify(e)}`);
    });
  };
  const u = ["/tests/fixtures/tiny-llama/config.json"];
  await check("load", [
    ["owner/name"],
    [{ urls: "/x/config.json" }],
    [{ urls: [5] }],
    [{ urls: ["http://[bad"] }],
    [{ urls: [] }],
    [{ hub: 5 }],
    [{ hub: "a/b/c" }],
    [{ hub: "a/b", revision: "" }],
    [{ hub: "a/b", file: "../x.gguf" }],
    [{ hub: "a/b", urls: u }],
    [null],
    [{ files: [1] }],
    [{ files: { "config.json": "text" } }],
    [{ urls: u }, "cpu"],
    [{ urls: u }, { signal: "__signal__" }],
    [{ urls: u }, { maxBytes: -1 }],
    [{ urls: u }, { onProgress: 5 }],
    [{ urls: u }, { backend: "tpu" }],
    [{ urls: u }, { wasmUrl: 5 }],
    [{ hub: "a/b" }, { endpoint: "ftp://x" }],
    [{ hub: "a/b" }, { endpoint: "not a url" }],
    [{ hub: "a/b" }, { token: 5 }],
  ]);
  // With no model loaded, badCalls calls the static Tuner.validateData.
  await wp("dispose");
  await check("validateData", [[5], ["x", { seqLen: 1 }], ["x", { workerUrl: 5 }]]);
  assert.equal((await wp("loadHub", { hub: "test/tiny-llama" }, { endpoint: hub.url })).error, undefined);
  await check("generate", [[5], ["x", 5], ["x", { maxNewTokens: 0 }], ["x", { maxNewTokens: 1.5 }], ["x", { temperature: -1 }], ["x", { topP: 2 }], ["x", { seed: -1 }], ["x", { chat: "yes" }], ["x", { onToken: "f" }], ["x", { signal: "__signal__" }]]);
  await check("classify", [["text"], [[1]], [["a"], { adapter: "yes" }], [["a"], { signal: "__signal__" }]]);
  await check("forward", [[[]], [[-1]], ["x"], [[0.5]]]);
  await check("loadAdapter", [[5], [[]], [{}], [[1]]]);
  await check("benchmark", [[{ task: "x" }], [5], [{ steps: 0 }]]);
  await check("validateData", [[5], ["x", 5], ["x", { task: "x" }], ["x", { seqLen: 1 }], ["x", { seqLen: 2.5 }], ["x", { dataFormat: "xml" }]]);
  await check("train", [[[{ text: "a" }], { task: "causal-lm", method: "lora" }, undefined, { signal: "__signal__" }]]);
  // train reports through run.done.
  const train = await b.page.evaluate(async () => {
    const out = [];
    for (const args of [[[{ text: "a" }], null], [5, { task: "causal-lm", method: "lora" }]]) {
      try {
        await window.wpTuner().train(...args).done;
        out.push({ ok: true });
      } catch (e) {
        out.push({ kind: e.kind, typed: e instanceof window.webpeft.WebPeftError });
      }
    }
    return out;
  });
  assert.deepEqual(train, [{ kind: "input", typed: true }, { kind: "input", typed: true }]);
  await check("listFiles", [[5], ["a/b", { endpoint: "ftp://x" }], ["a/b", { suffix: 5 }], ["a/b", 5]]);
  await check("clearCache", [[5]]);
  // The model still works after all that.
  assert.equal((await wp("generate", "hi", { maxNewTokens: 1 })).text, " t0");
});
