// A panic on one of the threads build's pool workers (wasm-bindgen-rayon) must
// not hang: the worker that waits for the pool's job is blocked for good, so
// the pool reports the crash to the page (a BroadcastChannel), the pending
// call rejects with kind "crash" within seconds, the Tuner is dead (every
// later call gets the same error), and a new Tuner loads. The panic comes from
// a test hook of the threads build (crate/src/web.rs `__panicOnThreadPool`).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { openTestPage, modelUrls, requireBuild, threadsBuild } from "./harness.mjs";

const MODEL = modelUrls("tests/fixtures/tiny-llama");
let b;

before(async () => {
  requireBuild();
  b = await openTestPage();
});
after(async () => {
  await b?.close();
});

test("a panic on a thread-pool worker rejects the pending call with kind 'crash' instead of hanging", { timeout: 2 * 60_000 }, async (t) => {
  if (!threadsBuild()) return t.skip("web/dist has no threads build (scripts/build-web.sh could not get rust-src)");
  const r = await b.page.evaluate(async (urls) => {
    const { Tuner, WebPeftError } = window.webpeft;
    const tuner = await Tuner.load({ urls }, { backend: "cpu", threads: 2 });
    const threads = tuner.device.threads;
    const t0 = performance.now();
    // Before the fix this never settles: the timeout turns the hang into a failure.
    const outcome = await Promise.race([
      tuner[Symbol.for("webpeft.test.panicOnThreadPool")]().then(
        () => ({ resolved: true }),
        (e) => ({ kind: e.kind, message: e.message, isWebPeftError: e instanceof WebPeftError }),
      ),
      new Promise((res) => setTimeout(() => res({ hung: true }), 20_000)),
    ]);
    const ms = performance.now() - t0;
    const later = await Promise.race([
      tuner.generate("hi", { maxNewTokens: 1 }).then(() => ({ resolved: true }), (e) => ({ kind: e.kind, message: e.message })),
      new Promise((res) => setTimeout(() => res({ hung: true }), 5_000)),
    ]);
    tuner.dispose();
    // A new Tuner works (the dead worker and its pool are gone).
    const fresh = await Tuner.load({ urls }, { backend: "cpu", threads: 2 });
    const logits = (await fresh.forward([1, 2, 3])).length;
    fresh.dispose();
    return { threads, outcome, ms, later, logits };
  }, MODEL);
  assert.equal(r.threads, 2, "the threads build runs on a pool");
  assert.equal(r.outcome.hung, undefined, "the call must not hang");
  assert.deepEqual([r.outcome.kind, r.outcome.isWebPeftError], ["crash", true], JSON.stringify(r.outcome));
  assert.match(r.outcome.message, /thread-pool worker panicked.*webpeft test hook: a panic on a thread-pool worker/s);
  assert.match(r.outcome.message, /load it again/);
  assert.ok(r.ms < 10_000, `reported within seconds (${r.ms} ms)`);
  assert.equal(r.later.kind, "crash", `the Tuner is dead: ${JSON.stringify(r.later)}`);
  assert.ok(r.logits > 0, "a new Tuner loads and runs");
});

test("the test hook is not in the main build: an 'unsupported' error, and the Tuner lives", { timeout: 5 * 60_000 }, async () => {
  const r = await b.page.evaluate(async (urls) => {
    const tuner = await window.webpeft.Tuner.load({ urls }, { backend: "cpu", threads: 1 });
    let e;
    try {
      await tuner[Symbol.for("webpeft.test.panicOnThreadPool")]();
    } catch (err) {
      e = { kind: err.kind };
    }
    const n = (await tuner.forward([1, 2, 3])).length;
    tuner.dispose();
    return { e, n };
  }, MODEL);
  assert.deepEqual(r.e, { kind: "unsupported" });
  assert.ok(r.n > 0);
});
