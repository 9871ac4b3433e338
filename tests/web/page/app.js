// Test page helpers for tests/web/*.test.mjs. Imports the built package
// (default /web/dist/index.js; ?dist=/other/dist for another build) and puts
// small async helpers on window.wp. Helpers return plain data; errors come
// back as { error: { name, kind, message, source, line } } so the tests can
// check the typed fields (a thrown error loses them on the way to node).
const params = new URLSearchParams(location.search);
const dist = params.get("dist") || "/web/dist";
const logEl = document.getElementById("log");
const log = (...a) => { logEl.textContent += a.join(" ") + "\n"; };

window.clicks = [];
document.getElementById("btn").addEventListener("click", (ev) => {
  // Input delay: from the browser's event timestamp to the handler running.
  window.clicks.push({ at: performance.now(), delay: performance.now() - ev.timeStamp });
  document.getElementById("clicks").textContent = String(window.clicks.length);
});

const errorData = (e) => ({
  name: e?.name, kind: e?.kind, message: String(e?.message ?? e), source: e?.source, line: e?.line,
  isWebPeftError: !!(window.webpeft && e instanceof window.webpeft.WebPeftError),
});
const safe = (f) => async (...args) => {
  try {
    return await f(...args);
  } catch (e) {
    log("error:", e?.kind, e?.message);
    return { error: errorData(e) };
  }
};

let tuner = null;
let run = null;
let events = [];

async function readFiles(urls) {
  const out = {};
  for (const u of urls) {
    const r = await fetch(u);
    if (!r.ok) throw new Error(`${u}: HTTP ${r.status}`);
    out[u.slice(u.lastIndexOf("/") + 1)] = new Uint8Array(await r.arrayBuffer());
  }
  return out;
}

function inputFile(id) {
  const f = document.getElementById(id).files[0];
  if (!f) throw new Error(`#${id}: no file chosen`);
  return f;
}

function described(t) {
  return { info: t.info, device: t.device };
}

/** The page's current Tuner, for tests that call it directly. */
window.wpTuner = () => tuner;

window.wp = {
  /** Loads a model from URLs. opts: Tuner.load options (backend, maxBytes, workerUrl). */
  load: safe(async (urls, opts = {}) => {
    tuner?.dispose();
    tuner = null;
    const progress = [];
    tuner = await window.webpeft.Tuner.load({ urls }, { ...opts, onProgress: (p) => progress.push(p) });
    log("loaded", JSON.stringify(tuner.device));
    return { ...described(tuner), progress: progress.length, progressFiles: [...new Set(progress.map((p) => p.file))] };
  }),
  /** Tuner.plan: the memory plan of a model from its headers only. `source`: { urls } (made absolute) or { files: urls } (read, then given as bytes). */
  plan: safe(async (source, train, opts = {}) => {
    const src = source.files ? { files: await readFiles(source.files) } : source;
    // Wrapped: a plan that does not fit has its own `error` field.
    return { plan: await window.webpeft.Tuner.plan(src, train, opts) };
  }),
  /** Loads from in-memory files, with model.safetensors cut to `truncate` bytes if given. */
  loadBytes: safe(async (urls, { truncate, ...opts } = {}) => {
    tuner?.dispose();
    tuner = null;
    const files = await readFiles(urls);
    if (truncate !== undefined) files["model.safetensors"] = files["model.safetensors"].slice(0, truncate);
    tuner = await window.webpeft.Tuner.load({ files }, opts);
    return described(tuner);
  }),
  /** Loads from the #model file input (File objects). */
  loadInput: safe(async (opts = {}) => {
    tuner?.dispose();
    tuner = null;
    tuner = await window.webpeft.Tuner.load({ files: [...document.getElementById("model").files] }, opts);
    return described(tuner);
  }),
  /** Starts training on the #data file (and #eval if chosen); events collect in the page. */
  startTrain: safe(async (options) => {
    const data = inputFile("data");
    const evalFiles = document.getElementById("eval").files;
    events = [];
    run = tuner.train(data, options, evalFiles.length ? evalFiles[0] : undefined);
    // Iterating a failed run's events throws its error; run.done carries it to the test.
    (async () => { for await (const e of run.events) events.push(e); })().catch(() => {});
    run.done.catch(() => {});
    return { started: true };
  }),
  /** Starts training on data given as a value (string or rows). */
  startTrainData: safe(async (data, options) => {
    events = [];
    run = tuner.train(data, options);
    // Iterating a failed run's events throws its error; run.done carries it to the test.
    (async () => { for await (const e of run.events) events.push(e); })().catch(() => {});
    run.done.catch(() => {});
    return { started: true };
  }),
  /** Drops the adapter (Tuner.resetAdapter). */
  resetAdapter: safe(async () => {
    await tuner.resetAdapter();
    return { ok: true };
  }),
  waitTrain: safe(async () => {
    const summary = await run.done;
    const all = [];
    for await (const e of run.events) all.push(e);
    return { summary, events: all };
  }),
  train: async (options) => {
    const s = await window.wp.startTrain(options);
    return s.error ? s : window.wp.waitTrain();
  },
  events: () => events.slice(),
  pause: safe(() => run.pause().then(() => ({ ok: true }))),
  resume: safe(() => run.resume().then(() => ({ ok: true }))),
  cancel: safe(() => run.cancel().then(() => ({ ok: true }))),
  forward: safe(async (ids) => Array.from(await tuner.forward(ids))),
  generate: safe(async (prompt, opts = {}) => {
    const tokens = [];
    const text = await tuner.generate(prompt, { ...opts, onToken: (t) => tokens.push(t) });
    return { text, tokens };
  }),
  classify: safe(async (texts, opts) => tuner.classify(texts, opts?.signal === "__pre_aborted__" ? { ...opts, signal: AbortSignal.abort() } : opts)),
  benchmark: safe(async (opts) => tuner.benchmark(opts)),
  exportFiles: safe(async () => {
    const files = await tuner.exportAdapterFiles();
    return Object.fromEntries(Object.entries(files).map(([k, v]) => [k, v.length]));
  }),
  exportZipSize: safe(async () => (await tuner.exportAdapter()).size),
  /** The exported adapter's webpeft.json, parsed. */
  exportSidecar: safe(async () => JSON.parse(new TextDecoder().decode((await tuner.exportAdapterFiles())["webpeft.json"]))),
  /** Offers the adapter zip as a download (<a download>), as a page would. */
  downloadAdapter: safe(async () => {
    const blob = await tuner.exportAdapter();
    const a = document.getElementById("download");
    a.href = URL.createObjectURL(blob);
    a.download = "adapter.zip";
    a.click();
    return { size: blob.size };
  }),
  /** Re-loads an exported adapter (round trip through the zip). */
  reloadAdapter: safe(async () => {
    const blob = await tuner.exportAdapter();
    await tuner.loadAdapter([new File([blob], "adapter.zip")]);
    return { ok: true };
  }),
  /** Frames drawn in `ms` of wall time. */
  frames: (ms = 1000) => new Promise((resolve) => {
    let n = 0;
    const t0 = performance.now();
    const tick = (t) => {
      n++;
      if (t - t0 < ms) requestAnimationFrame(tick);
      else resolve({ frames: n, ms: performance.now() - t0 });
    };
    requestAnimationFrame(tick);
  }),
  /** Delay of a zero-timeout (main-thread task latency). */
  taskDelay: () => new Promise((resolve) => { const t0 = performance.now(); setTimeout(() => resolve(performance.now() - t0), 0); }),
  /** Loads from a Hub repository: source { hub, revision?, file? }, opts with token/endpoint. */
  loadHub: safe(async (source, opts = {}) => {
    tuner?.dispose();
    tuner = null;
    const progress = [];
    tuner = await window.webpeft.Tuner.load(source, { backend: "cpu", ...opts, onProgress: (p) => progress.push(p) });
    return { ...described(tuner), progressFiles: [...new Set(progress.map((p) => p.file))] };
  }),
  /** Starts a load and aborts it once `afterBytes` bytes of `file` have come in. */
  loadAbortAfter: safe(async (source, opts, file, afterBytes) => {
    tuner?.dispose();
    tuner = null;
    const ctl = new AbortController();
    const t0 = performance.now();
    let abortedAt;
    try {
      tuner = await window.webpeft.Tuner.load(source, {
        backend: "cpu",
        ...opts,
        signal: ctl.signal,
        onProgress: (p) => {
          if (p.file === file && p.loaded >= afterBytes && !ctl.signal.aborted) {
            abortedAt = performance.now();
            ctl.abort();
          }
        },
      });
      return { loaded: true };
    } catch (e) {
      return { error: errorData(e), msAfterAbort: abortedAt === undefined ? null : performance.now() - abortedAt, ms: performance.now() - t0 };
    }
  }),
  listFiles: safe(async (repo, opts) => window.webpeft.Tuner.listFiles(repo, opts)),
  clearCache: safe(async (repo) => ({ removed: await window.webpeft.Tuner.clearCache(repo) })),
  /** Generation aborted from onToken once `afterTokens` tokens have come; counts tokens seen after the abort. */
  generateAbort: safe(async (prompt, opts, afterTokens) => {
    const ctl = new AbortController();
    let tokens = 0;
    let late = 0;
    let abortedAt;
    try {
      const text = await tuner.generate(prompt, {
        ...opts,
        signal: ctl.signal,
        onToken: () => {
          if (ctl.signal.aborted) late++;
          else if (++tokens >= afterTokens) {
            abortedAt = performance.now();
            ctl.abort();
          }
        },
      });
      return { text, tokens, late };
    } catch (e) {
      return { error: errorData(e), tokens, late, msAfterAbort: abortedAt === undefined ? null : performance.now() - abortedAt };
    }
  }),
  /** Classification aborted right after it is sent. */
  classifyAbort: safe(async (texts, opts) => {
    const ctl = new AbortController();
    const p = tuner.classify(texts, { ...opts, signal: ctl.signal });
    ctl.abort();
    try {
      return { result: await p };
    } catch (e) {
      return { error: errorData(e) };
    }
  }),
  /**
   * Calls `method` (a Tuner method name, or "load" / "listFiles" / "clearCache" for the
   * statics) with each argument list; returns what each threw (or { ok: true }).
   */
  badCalls: async (method, argLists) => {
    const out = [];
    for (const args of argLists) {
      try {
        const target = ["load", "listFiles", "clearCache"].includes(method) || (method === "validateData" && !tuner) ? window.webpeft.Tuner : tuner;
        const r = target[method](...args.map((a) => (a === "__signal__" ? { aborted: false } : a)));
        await (method === "train" ? r.done : r);
        out.push({ ok: true });
      } catch (e) {
        out.push(errorData(e));
      }
    }
    return out;
  },
  alive: () => 1 + 1,
  device: () => tuner && tuner.device,
  dispose: () => { tuner?.dispose(); tuner = null; return true; },
};

import(`${dist}/index.js`).then(
  (m) => { window.webpeft = m; window.wpReady = true; log("webpeft loaded from", dist); },
  (e) => { window.wpLoadError = String(e?.stack || e); log("load failed:", e); },
);
