// The module worker that hosts the wasm core. It owns the model (a wasm
// `Session`), reads model and data files, runs the training loop one step at a
// time (so pause/cancel messages are handled between steps), and answers the
// main thread's requests by id. A wasm panic marks the worker dead: every open
// and later request gets a "crash" error instead of hanging.
import * as mainCore from "webpeft-wasm";
import type { Session } from "webpeft-wasm";
import { zipSync, unzipSync, strToU8, strFromU8 } from "fflate";
import type {
  Backend,
  BenchmarkResult,
  DataPayload,
  DeviceInfo,
  ErrorPayload,
  EvalEvent,
  LoadProgress,
  ModelInfo,
  ModelPayload,
  Request,
  RequestMessage,
  ResponseMessage,
  CheckpointFiles,
  TrainEvent,
  TrainOptions,
  TrainStart,
  TrainSummary,
} from "./types.js";
import type { CoreEvent, DataValidation } from "./core-types.js";
import { camel, optionSource, snake } from "./casing.js";
import { WebPeftError, isKind, payload } from "./errors.js";
import { abortedError, authHeaders, checkRepoPath, hubError, hubFetch, openCache, pruneCache, repoInfo, resolveUrl } from "./hub.js";
import { planLimits, planModel, refuseOverPlan } from "./plan.js";

declare const self: DedicatedWorkerGlobalScope;

// Set by web/build.mjs: whether dist/threads/ holds the CPU-only threads build of the core.
declare const __WEBPEFT_THREADS__: boolean;

/** The wasm core: the main build (bundled here), or the threads build (loaded from dist/threads/). */
type Core = typeof mainCore;
let core: Core = mainCore;

/** Default largest total model size. The files stay in JavaScript's memory while the core reads them a tensor at a time (not in wasm32's 4 GiB), but they are still held in the tab until loading ends. */
const DEFAULT_MAX_BYTES = 2 * 1024 ** 3;

let wasmReady: Promise<unknown> | null = null;
let session: Session | null = null;
let device: DeviceInfo | null = null;
let dead: ErrorPayload | null = null;
/** The Hub repository the model came from, the default base_model of adapters. */
let baseModel: string | undefined;
let lastPanic = "";
const inflight = new Set<number>();

// ---- errors ----------------------------------------------------------------

// console_error_panic_hook writes the panic message with console.error just before
// the trap; keep it so the "crash" error can say what panicked.
const consoleError = console.error.bind(console);
console.error = (...args: unknown[]) => {
  const text = args.map((a) => (a instanceof Error ? a.message : String(a))).join(" ");
  if (/panicked at|panic/i.test(text)) lastPanic = text.slice(0, 2000);
  consoleError(...args);
};

function isTrap(e: unknown): boolean {
  if (typeof WebAssembly !== "undefined" && e instanceof WebAssembly.RuntimeError) return true;
  const m = e instanceof Error ? e.message : typeof e === "string" ? e : "";
  return /^unreachable\b|unreachable executed|RuntimeError: unreachable/i.test(m);
}

function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === "string") return e;
  try {
    return JSON.stringify(e);
  } catch {
    return String(e);
  }
}

/** Marks the worker dead after a wasm trap and fails every open request. */
function crash(e: unknown): ErrorPayload {
  if (!dead) {
    const what = lastPanic || messageOf(e);
    dead = {
      kind: "crash",
      message: `the wasm core crashed (${what}); this model is gone, load it again`,
      source: "wasm",
    };
    session = null; // its memory is no longer trustworthy
    for (const id of inflight) post({ id, type: "error", error: dead });
    inflight.clear();
    post({ id: -1, type: "crash", error: dead });
  }
  return dead;
}

/** Any thrown value as a typed error payload. */
function toPayload(e: unknown): ErrorPayload {
  if (dead) return dead;
  if (isTrap(e)) return crash(e);
  if (e instanceof WebPeftError) return e.toPayload();
  const kind = e && typeof e === "object" ? (e as { kind?: unknown }).kind : undefined;
  const source = e && typeof e === "object" ? (e as { source?: unknown }).source : undefined;
  const message = messageOf(e);
  if (isKind(kind)) return payload(kind, message, typeof source === "string" && source ? source : undefined);
  // wasm-bindgen's own guards ("recursive use of an object", "null pointer passed to rust")
  // and plain JS failures are bugs or misuse, not bad input.
  return payload("crash", message, "worker");
}

// Panics inside wasm-bindgen-futures callbacks escape as uncaught errors.
self.addEventListener("error", (ev: ErrorEvent) => {
  if (isTrap(ev.error ?? ev.message)) {
    ev.preventDefault();
    crash(ev.error ?? ev.message);
  }
});
self.addEventListener("unhandledrejection", (ev: PromiseRejectionEvent) => {
  if (isTrap(ev.reason)) {
    ev.preventDefault();
    crash(ev.reason);
  }
});

function post(msg: ResponseMessage, transfer: Transferable[] = []): void {
  self.postMessage(msg, transfer);
}

const macrotask = () => new Promise<void>((r) => setTimeout(r, 0));

// A macrotask without setTimeout's 4 ms clamp on nested timers: generation
// yields once per token so that an abort message can come in.
const yieldChannel = new MessageChannel();
const yielders: (() => void)[] = [];
yieldChannel.port1.onmessage = () => yielders.shift()?.();
const yieldToEvents = () =>
  new Promise<void>((r) => {
    yielders.push(r);
    yieldChannel.port2.postMessage(0);
  });

/** Abort controllers of the open requests, by id (an "abort" message fires one). */
const aborts = new Map<number, AbortController>();

// ---- reading files ----------------------------------------------------------

async function bytesOf(x: Blob | Uint8Array): Promise<Uint8Array> {
  return x instanceof Uint8Array ? x : new Uint8Array(await x.arrayBuffer());
}

function fileNameOf(url: string): string {
  const path = new URL(url, self.location.href).pathname;
  return decodeURIComponent(path.slice(path.lastIndexOf("/") + 1));
}

/** Reads a response body in chunks, reporting progress. */
async function readBody(res: Response, file: string, progress: (p: LoadProgress) => void, signal?: AbortSignal): Promise<Uint8Array> {
  const len = Number(res.headers.get("content-length"));
  const total = Number.isFinite(len) && len > 0 ? len : undefined;
  try {
    if (!res.body) {
      const b = new Uint8Array(await res.arrayBuffer());
      progress({ file, loaded: b.length, total: b.length });
      return b;
    }
    const reader = res.body.getReader();
    const chunks: Uint8Array[] = [];
    let loaded = 0;
    let last = 0;
    progress({ file, loaded: 0, total });
    for (;;) {
      if (signal?.aborted) {
        await reader.cancel().catch(() => {});
        throw abortedError("load");
      }
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      loaded += value.length;
      const now = Date.now();
      if (now - last > 100) {
        last = now;
        progress({ file, loaded, total });
      }
    }
    const out = new Uint8Array(loaded);
    let o = 0;
    for (const c of chunks) {
      out.set(c, o);
      o += c.length;
    }
    progress({ file, loaded, total: total ?? loaded });
    return out;
  } catch (e) {
    if (e instanceof WebPeftError) throw e;
    if (signal?.aborted) throw abortedError("load");
    throw new WebPeftError("io", `${file}: the download broke off (${messageOf(e)})`, file);
  }
}

interface FetchOptions {
  /** Name in progress reports and errors (default: the URL's last segment). */
  name?: string;
  cache?: Cache | null;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Hub requests: errors name the repository and say what to do. */
  hub?: { repo: string; revision: string; token?: string; path: string };
  /** Expected size in bytes (from the Hub): a shorter body is an error, not a model. */
  size?: number;
}

async function fetchFile(url: string, progress: (p: LoadProgress) => void, opts: FetchOptions = {}): Promise<Uint8Array> {
  const file = opts.name ?? fileNameOf(url);
  let res: Response | undefined;
  if (opts.cache) res = (await opts.cache.match(url).catch(() => undefined)) ?? undefined;
  const fromCache = !!res;
  if (!res) res = await hubFetch(url, file, { headers: opts.headers, signal: opts.signal });
  if (!res.ok) {
    if (opts.hub) throw await hubError(res, opts.hub, opts.hub.path);
    throw new WebPeftError("io", `${file}: ${url} answered HTTP ${res.status} ${res.statusText}`.trim(), file);
  }
  const bytes = await readBody(res, file, progress, opts.signal);
  if (opts.size !== undefined && bytes.length !== opts.size) {
    if (fromCache) await opts.cache!.delete(url).catch(() => {});
    const where = opts.hub ? `${opts.hub.repo}/${opts.hub.path}` : file;
    throw new WebPeftError("io", `${where}: got ${bytes.length} bytes, the Hub lists ${opts.size}`, where);
  }
  if (opts.cache && !fromCache) {
    try {
      await opts.cache.put(url, new Response(bytes as BufferSource, { headers: { "content-length": String(bytes.length) } }));
    } catch {
      // A full or unavailable cache only costs a download next time.
    }
  }
  return bytes;
}

/** The shard file names of a `model.safetensors.index.json`; a `format` error when it is malformed. */
function shardsOf(index: Uint8Array, where: string): string[] {
  let json: unknown;
  try {
    json = JSON.parse(strFromU8(index));
  } catch (e) {
    throw new WebPeftError("format", `${where}: not valid JSON (${messageOf(e)})`, where);
  }
  const map = json && typeof json === "object" ? (json as { weight_map?: unknown }).weight_map : undefined;
  if (!map || typeof map !== "object" || Array.isArray(map)) {
    throw new WebPeftError("format", `${where}: no "weight_map" object (tensor name -> shard file)`, where);
  }
  const shards = new Set<string>();
  for (const [tensor, f] of Object.entries(map as Record<string, unknown>)) {
    if (typeof f !== "string" || !/^[^/\\]+\.safetensors$/.test(f)) {
      throw new WebPeftError("format", `${where}: weight_map["${tensor}"] is ${JSON.stringify(f)}, not a .safetensors file name`, where);
    }
    shards.add(f);
  }
  if (!shards.size) throw new WebPeftError("format", `${where}: "weight_map" is empty`, where);
  return [...shards].sort();
}

async function gatherModel(
  model: ModelPayload,
  progress: (p: LoadProgress) => void,
  signal?: AbortSignal,
): Promise<{ names: string[]; files: Uint8Array[] }> {
  if (model.kind === "files") {
    const files: Uint8Array[] = [];
    for (let i = 0; i < model.names.length; i++) {
      if (signal?.aborted) throw abortedError("load");
      let b: Uint8Array;
      try {
        b = await bytesOf(model.blobs[i]);
      } catch (e) {
        throw new WebPeftError("io", `${baseName(model.names[i])}: could not read the file (${messageOf(e)})`, baseName(model.names[i]));
      }
      progress({ file: model.names[i], loaded: b.length, total: b.length });
      files.push(b);
    }
    return { names: model.names.map(baseName), files };
  }
  if (model.kind === "urls") {
    const names: string[] = [];
    const files: Uint8Array[] = [];
    for (const url of model.urls) {
      names.push(fileNameOf(url));
      files.push(await fetchFile(url, progress, { signal }));
    }
    return { names, files };
  }
  // Hugging Face Hub: the revision resolved to a commit, files cached by commit URL.
  const cache = await openCache();
  const access = { repo: model.repo, revision: model.revision, endpoint: model.endpoint, token: model.token, signal };
  const repo = await repoInfo(access, cache);
  const listed = new Map(repo.files.map((f) => [f.path, f]));
  const names: string[] = [];
  const files: Uint8Array[] = [];
  const at = `${model.repo} at ${model.revision}${model.revision === repo.commit ? "" : ` (${repo.commit.slice(0, 12)})`}`;
  const ggufs = repo.files.filter((x) => /\.gguf$/i.test(x.path)).map((x) => x.path);
  const hint = ggufs.length ? `; its GGUF files: ${ggufs.join(", ")} (pass one as \`file\`)` : "";
  const get = async (path: string, optional = false) => {
    const f = listed.get(path);
    // Optional files are asked for only when listed; a required one is asked for anyway
    // (a mirror's listing may be incomplete) and the Hub's 404 says what is missing.
    if (!f && optional) return null;
    let b: Uint8Array;
    try {
      b = await fetchFile(resolveUrl(model.endpoint, model.repo, repo.commit, path), progress, {
        name: path,
        cache,
        signal,
        headers: authHeaders(model.token),
        hub: { repo: model.repo, revision: model.revision, token: model.token, path },
        size: f?.size,
      });
    } catch (e) {
      if (e instanceof WebPeftError && e.kind === "io" && /HTTP 404\b/.test(e.message) && hint) {
        throw new WebPeftError("io", e.message + hint, e.source);
      }
      throw e;
    }
    names.push(baseName(path));
    files.push(b);
    return b;
  };
  if (model.file) {
    // One self-contained file (a .gguf carries config and tokenizer).
    await get(checkRepoPath(model.file, "file"));
    if (!model.file.toLowerCase().endsWith(".gguf")) {
      await get("config.json");
      await get("tokenizer.json");
      await get("tokenizer_config.json", true);
    }
  } else {
    await get("config.json");
    await get("tokenizer.json");
    await get("tokenizer_config.json", true);
    if (!(await get("model.safetensors", true))) {
      const indexName = "model.safetensors.index.json";
      const index = await get(indexName, true);
      if (!index) {
        throw new WebPeftError("io", `${model.repo}: neither model.safetensors nor ${indexName} is in ${at}${hint}`, model.repo);
      }
      for (const shard of shardsOf(index, `${model.repo}/${indexName}`)) await get(shard);
    }
  }
  // Files of the commits this repository had before are not needed again.
  if (cache) await pruneCache(cache, model.endpoint, model.repo, repo.commit);
  return { names, files };
}

function baseName(name: string): string {
  return name.slice(name.replace(/\\/g, "/").lastIndexOf("/") + 1);
}

function mb(n: number): string {
  return `${(n / 1024 ** 2).toFixed(1)} MB`;
}

// ---- operations ---------------------------------------------------------------

function needSession(): Session {
  if (!session) throw new WebPeftError("input", "no model is loaded", "session");
  return session;
}

/**
 * Train requests whose run has not started yet (queued, or reading a Blob): a cancel then
 * marks them, the run never starts, and the cancel is answered once the request has settled.
 */
const starting = new Map<number, { cancelled: boolean; waiters: number[] }>();

interface ActiveRun {
  id: number;
  /** The data as the run read it (a GPU job carries it). */
  data: { name: string; bytes: Uint8Array; evalName?: string; evalBytes?: Uint8Array };
  paused: boolean;
  /** Waiting for `resume` between two steps (a pause asked for mid-step takes effect after it). */
  parked: boolean;
  cancelled: boolean;
  wake: (() => void) | null;
  pauseWaiters: number[];
  stopWaiters: number[];
}
let run: ActiveRun | null = null;

/**
 * The threads build of the core: burn's Flex CPU backend with its kernels on a rayon
 * pool of `n` Web Workers sharing the wasm memory. Needs a cross-origin isolated page
 * (SharedArrayBuffer). Its files stay unbundled in dist/threads/: the pool's workers
 * import the glue module by URL.
 */
async function loadThreadsCore(n: number, url?: string, crashChannel?: string): Promise<Core> {
  const glue = new URL(url ?? "./threads/webpeft.js", import.meta.url);
  const mod = (await import(/* @vite-ignore */ glue.href)) as Core & { initThreadPool(n: number): Promise<void>; watchThreadPool?(channel: string): void };
  await mod.default({ module_or_path: new URL("webpeft_bg.wasm", glue) });
  await mod.initThreadPool(n);
  // A panic or trap on a pool worker blocks this worker for ever (it waits for the job in
  // Atomics.wait): the pool reports it on the page's BroadcastChannel instead.
  if (crashChannel && typeof mod.watchThreadPool === "function") mod.watchThreadPool(crashChannel);
  return mod;
}

async function load(id: number, msg: Extract<Request, { op: "load" }>, signal: AbortSignal) {
  const progress = (p: LoadProgress) => post({ id, type: "progress", progress: p });
  let notice = msg.notice;
  const wanted = msg.threads ?? (self.navigator.hardwareConcurrency || 1);
  if (!wasmReady && msg.backend === "cpu" && wanted > 1) {
    if (!__WEBPEFT_THREADS__) {
      // A build without the threads core (e.g. a development build): one thread.
    } else if (!self.crossOriginIsolated) {
      notice = [notice, "the page is not cross-origin isolated (COOP/COEP headers), so the CPU backend runs on one thread"].filter(Boolean).join("; ");
    } else {
      try {
        core = await loadThreadsCore(wanted, msg.threadsUrl, msg.crashChannel);
        wasmReady = Promise.resolve();
      } catch (e) {
        core = mainCore;
        notice = [notice, `the CPU backend's threads could not start (${messageOf(e)}), so it runs on one thread`].filter(Boolean).join("; ");
      }
    }
  }
  wasmReady ??= core.default({ module_or_path: msg.wasmUrl ?? new URL("./webpeft_bg.wasm", import.meta.url) });
  try {
    await wasmReady;
  } catch (e) {
    wasmReady = null;
    throw new WebPeftError("io", `webpeft_bg.wasm: could not load the wasm core (${messageOf(e)})`, "webpeft_bg.wasm");
  }
  let backend: Backend = msg.backend;
  let dev;
  try {
    dev = await core.initDevice(backend);
  } catch (e) {
    if (backend !== "webgpu" || !msg.fallbackToCpu || isTrap(e)) throw e;
    backend = "cpu";
    notice = `WebGPU could not start (${messageOf(e)}); using the CPU backend`;
    dev = await core.initDevice("cpu");
  }
  // What the core does not report about the device, the worker asks WebGPU itself.
  const gpu = backend === "webgpu" ? await describeGpu() : {};
  const threads = backend === "cpu" ? { threads: core.cpuThreads ? core.cpuThreads() : 1 } : {};
  device = { f16: false, subgroups: false, ...gpu, ...dev, ...threads, backend: dev?.backend ?? backend, ...(notice ? { notice } : {}) } as DeviceInfo;

  // The memory plan, from the files' headers only: a model that cannot fit is refused before it is downloaded or read.
  try {
    await refuseOverPlan(core, msg.model, planLimits(device.backend, msg.maxBytes, msg.maxTensorBytes ?? (device.backend === "webgpu" ? device.maxStorageBufferBindingSize : undefined)), msg.quantize);
  } catch (e) {
    // Only a plan that does not fit (or a malformed header) stops the load here. A source the plan
    // could not reach (an offline Hub with the model cached, say) is left to the download, which
    // uses the cache or reports its own typed error.
    if (!(e instanceof WebPeftError) || e.kind !== "io") throw e;
  }
  const { names, files } = await gatherModel(msg.model, progress, signal);
  if (signal.aborted) throw abortedError("load");
  const total = files.reduce((s, f) => s + f.length, 0);
  const limit = msg.maxBytes ?? DEFAULT_MAX_BYTES;
  const limitName = msg.maxBytes !== undefined ? "the maxBytes limit" : "the wasm32 memory budget";
  if (total > limit) {
    throw new WebPeftError(
      "device",
      `model: the files total ${mb(total)} (${total} bytes), above ${limitName} of ${mb(limit)} (${limit} bytes) on the ${device.backend} backend`,
      "model",
    );
  }
  // A weight larger than the device can bind would fail inside a shader; refuse it up front.
  const maxTensor = msg.maxTensorBytes ?? (device.backend === "webgpu" ? device.maxStorageBufferBindingSize : undefined);
  const s = core.Session.load(names, files, maxTensor, msg.quantize);
  const info = camel<ModelInfo>(s.info());
  const est = Number(info?.estimatedBytes);
  if (Number.isFinite(est) && est > limit) {
    s.free();
    throw new WebPeftError(
      "device",
      `model: it needs about ${mb(est)} (${est} bytes), above ${limitName} of ${mb(limit)} (${limit} bytes) on the ${device.backend} backend`,
      "model",
    );
  }
  session?.free();
  session = s;
  baseModel = msg.model.kind === "hub" ? msg.model.repo : undefined;
  return { info, device };
}

/** The WebGPU adapter as this worker sees it: name, features and the limits that bound model size. */
async function describeGpu(): Promise<Partial<DeviceInfo>> {
  try {
    const gpu = (self.navigator as unknown as { gpu?: any }).gpu;
    const a = gpu ? await gpu.requestAdapter({ powerPreference: "high-performance" }) : null;
    if (!a) return {};
    const i = a.info ?? {};
    const out: Partial<DeviceInfo> = {
      adapter: i.description || [i.vendor, i.architecture].filter(Boolean).join(" ") || undefined,
      vendor: i.vendor || undefined,
      architecture: i.architecture || undefined,
      f16: a.features.has("shader-f16"),
      subgroups: a.features.has("subgroups"),
      maxBufferSize: a.limits.maxBufferSize,
      maxStorageBufferBindingSize: a.limits.maxStorageBufferBindingSize,
    };
    for (const k of Object.keys(out) as (keyof DeviceInfo)[]) if (out[k] === undefined) delete out[k];
    return out;
  } catch {
    return {};
  }
}

/** The core's training job from the package's options: snake_case keys, without the package's own options. */
function coreOptions(options: Record<string, unknown>): Record<string, unknown> {
  const { dataFormat: _format, checkpointEvery: _every, ...job } = options as Partial<TrainOptions>;
  return snake(job) as Record<string, unknown>;
}

async function train(id: number, msg: Extract<Request, { op: "train" }>): Promise<TrainSummary> {
  const s = needSession();
  if (run) throw new WebPeftError("input", "a training run is already in progress", "train");
  const trainBytes = await bytesOf(msg.data.blob ?? msg.data.bytes!);
  const evalBytes = msg.evalData ? await bytesOf(msg.evalData.blob ?? msg.evalData.bytes!) : undefined;
  // A cancel that came while the data was read (or the request waited): nothing starts.
  if (starting.get(id)?.cancelled) throw abortedError("train", " before the run started");
  starting.delete(id);
  const options = coreOptions(msg.options);
  if (options.base_model === undefined && baseModel) options.base_model = baseModel;
  const every = checkpointEvery(msg.options.checkpointEvery);
  const resume = msg.resumeFrom !== undefined && msg.resumeFrom !== null ? checkpointFiles(msg.resumeFrom) : undefined;
  if (every > 0 || resume) needCheckpoints(s);
  // Resuming: the checkpoint's adapter goes on the model (which must have none), the run is
  // started with the original options and continues that adapter, then the optimiser state,
  // the step and the data order come back. A failure on the way takes the checkpoint's
  // adapter off again, so the model is as it was.
  if (resume) {
    options.adapter = "continue";
    s.loadAdapter(resume.config, resume.weights, resume.sidecar.length ? resume.sidecar : undefined);
  }
  let started: TrainStart;
  try {
    started = camel<TrainStart>(s.startTraining(msg.data.name, trainBytes, msg.evalData?.name, evalBytes, options));
    if (resume) {
      try {
        s.restoreCheckpoint(resume.optimizer, resume.state);
      } catch (e) {
        if (!isTrap(e)) s.finishTraining();
        throw e;
      }
    }
  } catch (e) {
    if (resume && !isTrap(e) && !dead) {
      try {
        s.resetAdapter();
      } catch (e2) {
        if (isTrap(e2)) crash(e2);
      }
    }
    throw e;
  }
  const data = { name: msg.data.name, bytes: trainBytes, evalName: msg.evalData?.name, evalBytes };
  const r: ActiveRun = { id, data, paused: false, parked: false, cancelled: false, wake: null, pauseWaiters: [], stopWaiters: [] };
  run = r;
  const event = (e: TrainEvent) => post({ id, type: "event", event: e });
  event({ event: "start", ...started, warnings: started.warnings ?? [] });
  const t0 = performance.now();
  let steps = 0;
  let loss: number | undefined;
  let lastEval: EvalEvent["metrics"] | undefined;
  let reason = "completed";
  try {
    for (;;) {
      await macrotask(); // lets pause/cancel messages in
      if (r.cancelled) {
        reason = "cancelled";
        event({ event: "done", step: steps, reason });
        break;
      }
      if (r.paused) {
        event({ event: "paused", step: steps });
        for (const w of r.pauseWaiters.splice(0)) post({ id: w, type: "result", result: null });
        r.parked = true;
        await new Promise<void>((wake) => (r.wake = wake));
        r.parked = false;
        r.wake = null;
        if (!r.cancelled) event({ event: "resumed", step: steps });
        continue;
      }
      if (!s.isTraining()) break;
      const events = camel<CoreEvent[]>(await s.trainStep());
      let finished = false;
      let stepped = false;
      for (const e of events) {
        event(e);
        if (e.event === "step") {
          steps = e.step;
          loss = e.loss;
          stepped = true;
        } else if (e.event === "eval") {
          lastEval = e.metrics;
        } else if (e.event === "done") {
          reason = e.reason;
          steps = e.step ?? steps;
          finished = true;
        }
      }
      if (finished) break;
      // A checkpoint only while the run is open (the last step needs none: the run is complete).
      if (every > 0 && stepped && steps % every === 0 && s.isTraining()) {
        const c = await s.checkpoint();
        const files: CheckpointFiles = {
          config: own(c.config),
          weights: own(c.weights),
          sidecar: own(c.sidecar ?? new Uint8Array(0)),
          optimizer: own(c.optimizer),
          state: own(c.state),
        };
        post({ id, type: "event", event: { event: "checkpoint", step: steps, files } }, [...new Set(Object.values(files).map((b) => b.buffer))]);
      }
    }
  } finally {
    run = null;
    for (const w of r.pauseWaiters.splice(0)) post({ id: w, type: "result", result: null });
    if (!dead) {
      try {
        s.finishTraining();
      } catch (e) {
        if (isTrap(e)) crash(e);
      }
    }
  }
  for (const w of r.stopWaiters.splice(0)) post({ id: w, type: "result", result: null });
  return {
    ...started,
    warnings: started.warnings ?? [],
    reason,
    steps,
    loss,
    eval: lastEval,
    elapsedS: (performance.now() - t0) / 1000,
  };
}

function checkpointEvery(v: unknown): number {
  if (v === undefined || v === null) return 0;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
    throw new WebPeftError("input", `checkpointEvery: ${JSON.stringify(v)} is not a whole number of steps (0 = no checkpoints)`, "checkpointEvery");
  }
  return v;
}

/** Checks `resumeFrom`: five byte arrays, as a checkpoint event gave them. */
function checkpointFiles(c: unknown): CheckpointFiles {
  if (!c || typeof c !== "object") throw new WebPeftError("input", "resumeFrom: give the files of a checkpoint event ({config, weights, sidecar, optimizer, state})", "resumeFrom");
  const o = c as Record<string, unknown>;
  const out: Record<string, Uint8Array> = {};
  for (const k of ["config", "weights", "sidecar", "optimizer", "state"]) {
    const v = o[k];
    if (k === "sidecar" && (v === undefined || v === null)) {
      out[k] = new Uint8Array(0);
      continue;
    }
    if (v instanceof Uint8Array) out[k] = v;
    else if (v instanceof ArrayBuffer) out[k] = new Uint8Array(v);
    else throw new WebPeftError("input", `resumeFrom.${k}: missing or not bytes (a Uint8Array from a checkpoint event)`, "resumeFrom");
  }
  return out as unknown as CheckpointFiles;
}

function needCheckpoints(s: Session): void {
  const f = s as unknown as { checkpoint?: unknown; restoreCheckpoint?: unknown };
  if (typeof f.checkpoint !== "function" || typeof f.restoreCheckpoint !== "function") {
    throw new WebPeftError("unsupported", "checkpoint: this build of the core cannot checkpoint a run (no Session.checkpoint/restoreCheckpoint)", "checkpoint");
  }
}

/** A Uint8Array that owns its whole buffer (safe to transfer: never a view into wasm memory). */
function own(b: Uint8Array): Uint8Array {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer ? b : b.slice();
}

/** Runs `f` with the adapter switched off when `adapter` is false. */
async function withAdapter<T>(s: Session, adapter: boolean, f: () => Promise<T>): Promise<T> {
  if (adapter) return f();
  if (typeof (s as { setAdapterEnabled?: unknown }).setAdapterEnabled !== "function") {
    throw new WebPeftError("unsupported", "adapter: this build of the core cannot switch the adapter off (no Session.setAdapterEnabled)", "adapter");
  }
  s.setAdapterEnabled(false);
  try {
    return await f();
  } finally {
    if (!dead) s.setAdapterEnabled(true);
  }
}

function adapterReadme(config: Uint8Array, sidecar: Uint8Array): string {
  let cfg: Record<string, unknown> = {};
  let side: Record<string, unknown> = {};
  try {
    cfg = JSON.parse(strFromU8(config));
  } catch {}
  try {
    side = JSON.parse(strFromU8(sidecar));
  } catch {}
  const base = String(cfg.base_model_name_or_path || "BASE_MODEL");
  const type = String(cfg.peft_type || "LORA");
  const seqCls = cfg.task_type === "SEQ_CLS" || side.task === "seq-cls";
  const labels = Array.isArray(side.labels) ? (side.labels as string[]) : undefined;
  const auto = seqCls ? "AutoModelForSequenceClassification" : "AutoModelForCausalLM";
  // A Python dict with int keys: transformers 5 keeps the string keys given to from_pretrained,
  // and the model's predictions (ints) would not find their names in `model.config.id2label`.
  const extra = seqCls && labels
    ? `, num_labels=${labels.length},\n    id2label={${labels.map((l, i) => `${i}: ${JSON.stringify(l)}`).join(", ")}}`
    : "";
  return `# PEFT adapter trained in the browser with webpeft

- Method: ${type}${cfg.task_type ? ` (task ${cfg.task_type})` : ""}
- Base model: \`${base}\`
${labels ? `- Labels: ${labels.map((l) => `\`${l}\``).join(", ")}\n` : ""}
Files:
- \`adapter_config.json\`, \`adapter_model.safetensors\`: a Hugging Face PEFT adapter.
- \`webpeft.json\`: what PEFT's files cannot say (task, labels, training settings), for webpeft.

## Load it in Python

\`\`\`python
from transformers import ${auto}, AutoTokenizer
from peft import PeftModel

base = ${auto}.from_pretrained("${base}"${extra})
tokenizer = AutoTokenizer.from_pretrained("${base}")
model = PeftModel.from_pretrained(base, "path/to/this/folder")
model.eval()
\`\`\`

Replace \`${base}\` with the Hub id or the local folder of the base model it was trained on.
\`model.merge_and_unload()\` folds LoRA, IA3 and BitFit adapters into the base weights.

## Load it with webpeft

\`\`\`js
const tuner = await Tuner.load({ hub: "${base}" });
await tuner.loadAdapter(files); // these files, or the zip
\`\`\`
`;
}

async function exportFiles(): Promise<Record<string, Uint8Array>> {
  const s = needSession();
  const a = await s.exportAdapter();
  const sidecar = a.sidecar ?? strToU8("{}");
  return {
    "adapter_config.json": a.config,
    "adapter_model.safetensors": a.weights,
    "webpeft.json": sidecar,
    "README.md": strToU8(adapterReadme(a.config, sidecar)),
  };
}

/** The files of an adapter zip that are read; the rest (README.md...) are not unpacked. */
const ADAPTER_FILES = new Set(["adapter_config.json", "adapter_model.safetensors", "webpeft.json"]);
/** Bounds on what an adapter zip may unpack to (wasm32 holds 4 GiB in all). */
const MAX_ADAPTER_FILE = 1024 * 1024 * 1024;
const MAX_ADAPTER_ZIP = 1536 * 1024 * 1024;

async function loadAdapterFiles(names: string[], blobs: (Blob | Uint8Array)[]) {
  const s = needSession();
  const files = new Map<string, Uint8Array>();
  let zips = 0;
  for (let i = 0; i < names.length; i++) {
    const bytes = await bytesOf(blobs[i]);
    // A zip by its name, or by its signature (a bare Blob from exportAdapter()).
    const zipMagic = bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
    if (names[i].toLowerCase().endsWith(".zip") || (zipMagic && !/\.(json|safetensors)$/i.test(names[i]))) {
      zips++;
      let entries: Record<string, Uint8Array>;
      // Only the adapter's files are inflated, each into a buffer of the size its header
      // declares (fflate writes no further), and those sizes are bounded first: a zip bomb is
      // a format error, not an out-of-memory worker.
      let declared = 0;
      const zipName = baseName(names[i]);
      const filter = (f: { name: string; originalSize: number }) => {
        if (!ADAPTER_FILES.has(baseName(f.name))) return false;
        declared += f.originalSize;
        if (f.originalSize > MAX_ADAPTER_FILE || declared > MAX_ADAPTER_ZIP) {
          throw new WebPeftError("format", `${zipName}: ${baseName(f.name)} declares ${f.originalSize} bytes unpacked, more than an adapter zip may hold (${MAX_ADAPTER_FILE} per file, ${MAX_ADAPTER_ZIP} in all)`, zipName);
        }
        return true;
      };
      try {
        entries = unzipSync(bytes, { filter });
      } catch (e) {
        if (e instanceof WebPeftError) throw e;
        throw new WebPeftError("format", `${zipName}: not a readable zip file (${messageOf(e)})`, zipName);
      }
      for (const [n, b] of Object.entries(entries)) if (!n.endsWith("/")) files.set(baseName(n), b);
    } else {
      files.set(baseName(names[i]), bytes);
    }
  }
  const config = files.get("adapter_config.json");
  const weights = files.get("adapter_model.safetensors");
  for (const [name, f] of [["adapter_config.json", config], ["adapter_model.safetensors", weights]] as const) {
    if (!f && zips) throw new WebPeftError("format", `${name}: missing from the adapter zip (it holds ${[...files.keys()].join(", ") || "nothing"})`, name);
    if (!f) throw new WebPeftError("input", `${name}: missing from the adapter files (${[...files.keys()].join(", ") || "none given"})`, name);
  }
  s.loadAdapter(config!, weights!, files.get("webpeft.json"));
}

async function benchmark(msg: Extract<Request, { op: "benchmark" }>): Promise<BenchmarkResult> {
  const s = needSession();
  const { task, steps, matmulSize } = msg;
  // The bindings type this result as `any`; it is {batch, seq, ms}.
  const r: { batch: number; seq: number; ms: Float64Array } = await s.benchTrain(task, msg.batch, msg.seq, steps);
  const { batch, seq } = r;
  const times = Array.from(r.ms);
  const stepMs = times.slice(1);
  const msPerStep = stepMs.reduce((a, b) => a + b, 0) / Math.max(1, stepMs.length);
  const out: BenchmarkResult = {
    backend: device!.backend,
    task,
    batch,
    seq,
    warmupMs: times[0],
    stepMs,
    msPerStep,
    tokensPerSecond: (batch * seq) / (msPerStep / 1000),
  };
  if (matmulSize > 0) {
    const reps = 4;
    const ms = await core.benchMatmul(matmulSize, reps);
    out.matmul = { n: matmulSize, msPerMatmul: ms, gflops: (2 * matmulSize ** 3) / (ms / 1000) / 1e9 };
  }
  return out;
}

/** Generation, one token at a time: the worker's event loop runs between tokens, so an abort is seen. */
async function generateText(id: number, msg: Extract<Request, { op: "generate" }>, signal: AbortSignal): Promise<string> {
  const s = needSession();
  let tokens = 0;
  const text = await withAdapter(s, msg.adapter, () =>
    s.generate(msg.prompt, msg.chat, msg.maxNewTokens, msg.temperature, msg.topP, msg.seed >>> 0, (t: string) => {
      tokens++;
      if (t) post({ id, type: "token", text: t });
      // Awaited by the core before the next token (false stops it).
      return yieldToEvents().then(() => !signal.aborted);
    }),
  );
  if (signal.aborted) throw abortedError("generate", ` after ${tokens} token${tokens === 1 ? "" : "s"}`);
  return text;
}

/** A chat's next assistant turn, one token at a time (as generateText). */
async function chatText(id: number, msg: Extract<Request, { op: "chat" }>, signal: AbortSignal): Promise<string> {
  const s = needSession();
  if (typeof (s as { generateChat?: unknown }).generateChat !== "function") {
    throw new WebPeftError("unsupported", "chat: this build of the core has no Session.generateChat", "chat");
  }
  let tokens = 0;
  const text = await withAdapter(s, msg.adapter, () =>
    s.generateChat(JSON.stringify(msg.messages), msg.maxNewTokens, msg.temperature, msg.topP, msg.seed >>> 0, (t: string) => {
      tokens++;
      if (t) post({ id, type: "token", text: t });
      return yieldToEvents().then(() => !signal.aborted);
    }),
  );
  if (signal.aborted) throw abortedError("chat", ` after ${tokens} token${tokens === 1 ? "" : "s"}`);
  return text;
}

/** Classification one text at a time, so an abort is seen between texts. */
async function classifyTexts(msg: Extract<Request, { op: "classify" }>, signal: AbortSignal): Promise<unknown[]> {
  const s = needSession();
  const out: unknown[] = [];
  await withAdapter(s, msg.adapter, async () => {
    for (const t of msg.texts) {
      if (signal.aborted) break;
      out.push(...((await s.classify([t])) as unknown[]));
      await yieldToEvents();
    }
  });
  if (signal.aborted) throw abortedError("classify", ` after ${out.length} of ${msg.texts.length} texts`);
  return out;
}

async function perform(id: number, msg: Request, signal: AbortSignal): Promise<{ result: unknown; transfer?: Transferable[] }> {
  if (signal.aborted) throw abortedError(msg.op);
  switch (msg.op) {
    case "plan": {
      wasmReady ??= core.default({ module_or_path: msg.wasmUrl ?? new URL("./webpeft_bg.wasm", import.meta.url) });
      await wasmReady;
      return { result: await planModel(core, msg.model, msg.options ? coreOptions(msg.options) : undefined, planLimits(msg.backend, msg.maxBytes, msg.maxTensorBytes), msg.quantize) };
    }
    case "load":
      return { result: await load(id, msg, signal) };
    case "validateData": {
      const bytes = await bytesOf(msg.data.blob ?? msg.data.bytes!);
      if (session) return { result: camel<DataValidation>(session.validateData(msg.data.name, bytes, msg.options)) };
      // Without a model (Tuner.validateData): the parser only, in a worker of its own.
      wasmReady ??= core.default({ module_or_path: msg.wasmUrl ?? new URL("./webpeft_bg.wasm", import.meta.url) });
      await wasmReady;
      return { result: camel<DataValidation>(core.validateData(msg.data.name, bytes, msg.options)) };
    }
    case "panicOnThreadPool": {
      const hook = (core as { __panicOnThreadPool?: () => void }).__panicOnThreadPool;
      if (typeof hook !== "function") throw new WebPeftError("unsupported", "panicOnThreadPool: a test hook of the threads build only", "test");
      hook(); // blocks this worker: the pool reports the crash to the page
      return { result: null };
    }
    case "train":
      return { result: await train(id, msg) };
    case "generate":
      return { result: await generateText(id, msg, signal) };
    case "chat":
      return { result: await chatText(id, msg, signal) };
    case "renderChat":
      return { result: needSession().renderChat(JSON.stringify(msg.messages), msg.addGenerationPrompt) };
    case "tokenize": {
      const s = needSession();
      if (typeof (s as { tokenize?: unknown }).tokenize !== "function") {
        throw new WebPeftError("unsupported", "tokenize: this build of the core has no Session.tokenize", "tokenize");
      }
      return { result: Array.from(s.tokenize(msg.text, msg.specialTokens)) };
    }
    case "classify":
      return { result: await classifyTexts(msg, signal) };
    case "suggest": {
      const s = needSession();
      if (typeof (s as { suggestOptions?: unknown }).suggestOptions !== "function") {
        throw new WebPeftError("unsupported", "suggestOptions: this build of the core has no Session.suggestOptions", "suggestOptions");
      }
      const raw = s.suggestOptions(msg.task, msg.rows, msg.heldOut) as { options: Record<string, unknown>; why: string };
      // Only what the suggestion sets: unset options (null) are left to train's defaults.
      const options = Object.fromEntries(Object.entries(raw.options).filter(([, v]) => v !== null && v !== undefined));
      return { result: { options: camel(options), why: raw.why } };
    }
    case "forward": {
      const s = needSession();
      const logits = new Float32Array(await s.forward(Uint32Array.from(msg.ids)));
      return { result: logits, transfer: [logits.buffer] };
    }
    case "exportFiles": {
      const files = await exportFiles();
      return { result: files };
    }
    case "exportZip": {
      const files = await exportFiles();
      const zip = zipSync(
        Object.fromEntries(Object.entries(files).map(([n, b]) => [n, [b, { level: n.endsWith(".safetensors") ? 1 : 6 }]])) as never,
      );
      return { result: zip, transfer: [zip.buffer] };
    }
    case "gpuJob": {
      const s = needSession();
      // The job starts where the run stands: between steps, so only while it is paused.
      // Parked, not just asked to pause: a step still running holds the session.
      if (!run || !run.parked) throw new WebPeftError("input", "pause the training run first (and wait for run.pause() to resolve): a GPU job continues a run from where it stands", "exportGpuJob");
      const d = run.data;
      const files = await s.gpuJob(d.name, d.bytes, d.evalName, d.evalBytes);
      const zip = zipSync(
        Object.fromEntries(Object.entries(files).map(([n, b]) => [`webpeft-job/${n}`, [b, { level: n.endsWith(".safetensors") ? 1 : 6 }]])) as never,
      );
      return { result: zip, transfer: [zip.buffer] };
    }
    case "exportGguf": {
      const gguf = await needSession().exportAdapterGguf();
      return { result: gguf, transfer: [gguf.buffer] };
    }
    case "loadAdapter":
      await loadAdapterFiles(msg.names, msg.blobs);
      return { result: null };
    case "resetAdapter": {
      const s = needSession();
      if (typeof (s as { resetAdapter?: unknown }).resetAdapter !== "function") {
        throw new WebPeftError("unsupported", "resetAdapter: this build of the core cannot drop the adapter (no Session.resetAdapter)", "resetAdapter");
      }
      s.resetAdapter();
      return { result: null };
    }
    case "benchmark":
      return { result: await benchmark(msg) };
    case "dispose":
      if (run) {
        run.cancelled = true;
        run.wake?.();
      }
      session?.free();
      session = null;
      return { result: null };
    default:
      throw new WebPeftError("input", `unknown request ${(msg as { op: string }).op}`, "worker");
  }
}

// Requests that touch the model run one at a time (each borrows the wasm Session across awaits).
let queue: Promise<unknown> = Promise.resolve();

self.onmessage = (ev: MessageEvent<RequestMessage>) => {
  const msg = ev.data;
  const id = msg.id;
  if (dead) {
    post({ id, type: "error", error: dead });
    return;
  }
  // An abort goes straight through: the request sees it between tokens, texts or download chunks.
  if (msg.op === "abort") {
    aborts.get(msg.target)?.abort();
    return;
  }
  // Run control goes straight through, between steps.
  if (msg.op === "pause" || msg.op === "resume" || msg.op === "cancel") {
    const r = run;
    if (!r && msg.op === "cancel" && starting.size) {
      for (const t of starting.values()) t.cancelled = true;
      [...starting.values()].pop()!.waiters.push(id);
      return;
    }
    if (!r) return post({ id, type: "result", result: null });
    if (msg.op === "pause") {
      r.paused = true;
      r.pauseWaiters.push(id);
    } else if (msg.op === "resume") {
      r.paused = false;
      r.wake?.();
      post({ id, type: "result", result: null });
    } else {
      r.cancelled = true;
      r.stopWaiters.push(id);
      r.wake?.();
    }
    return;
  }
  if (run && msg.op === "gpuJob") {
    // The run holds the request queue while it lasts; parked between steps it leaves the
    // session to this request (which checks that it is parked).
    perform(id, msg, new AbortController().signal).then(
      ({ result, transfer }) => post({ id, type: "result", result }, transfer),
      (e) => post({ id, type: "error", error: toPayload(e) }),
    );
    return;
  }
  if (run && msg.op !== "dispose") {
    post({
      id,
      type: "error",
      error: payload("input", `${msg.op}: a training run is in progress; wait for it to finish or cancel it`, msg.op),
    });
    return;
  }
  inflight.add(id);
  if (msg.op === "train") starting.set(id, { cancelled: false, waiters: [] });
  const controller = new AbortController();
  aborts.set(id, controller);
  const job = queue.then(async () => {
    if (dead) throw dead;
    return perform(id, msg, controller.signal);
  });
  job
    .finally(() => {
      aborts.delete(id);
      // A train request that ended before its run started answers the cancels it got.
      for (const w of starting.get(id)?.waiters ?? []) post({ id: w, type: "result", result: null });
      starting.delete(id);
    })
    .catch(() => {});
  queue = job.catch(() => {});
  job.then(
    ({ result, transfer }) => {
      if (!inflight.delete(id)) return;
      post({ id, type: "result", result }, transfer);
    },
    (e) => {
      let error = e === dead && dead ? dead : toPayload(e);
      // The core names a bad training option as its field (`seq_len`); the package spells it `seqLen`.
      if ((msg.op === "train" || msg.op === "plan") && error.source) {
        const source = optionSource(error.source);
        if (source !== error.source) {
          const message = error.message.startsWith(`${error.source}: `) ? `${source}: ${error.message.slice(error.source.length + 2)}` : error.message;
          error = { ...error, source, message };
        }
      }
      if (!inflight.delete(id)) return;
      post({ id, type: "error", error });
    },
  );
};
