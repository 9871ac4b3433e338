// webpeft: fine-tune small transformers in the browser with PEFT methods.
// The main-thread API. Every model operation runs in a module worker that
// hosts the wasm core, so the page stays responsive while training.
import { WebPeftError } from "./errors.js";
import { abortedError, checkEndpoint, checkRepo, checkRepoPath, checkRevision, checkToken, clearCache, openCache, repoInfo } from "./hub.js";
import type {
  Backend,
  BenchmarkOptions,
  BenchmarkResult,
  ChatMessage,
  ChatOptions,
  ChatReply,
  Classification,
  ClassifyOptions,
  TokenizeOptions,
  HubRepoInfo,
  ListFilesOptions,
  DataInput,
  DataPayload,
  DeviceInfo,
  ErrorPayload,
  GenerateOptions,
  LoadOptions,
  Quantize,
  LoadProgress,
  ModelInfo,
  ModelPayload,
  ModelSource,
  MemoryPlan,
  PlanOptions,
  Request,
  ResponseMessage,
  Task,
  TrainEvent,
  TrainOptions,
  TrainResume,
  TrainRun,
  TrainSummary,
  TrainSuggestion,
  ValidateDataOptions,
  DataValidation,
} from "./types.js";

export { WebPeftError };
export type * from "./types.js";

interface Pending {
  resolve: (v: any) => void;
  reject: (e: WebPeftError) => void;
  onEvent?: (e: TrainEvent) => void;
  onToken?: (t: string) => void;
  onProgress?: (p: LoadProgress) => void;
  /** Its signal fired: no more callbacks, and it settles as "aborted" once the worker has stopped. */
  aborted?: WebPeftError;
}

/** Request/response over the worker's message port; fails every open request if the worker dies. */
class Connection {
  private nextId = 1;
  private pending = new Map<number, Pending>();
  dead: WebPeftError | null = null;

  /** Threads build: where the pool's workers report a panic or trap (see `crashChannelName`). */
  private crashes: BroadcastChannel | null = null;

  constructor(private worker: Worker, crashChannel?: string) {
    worker.addEventListener("message", (ev: MessageEvent<ResponseMessage>) => this.onMessage(ev.data));
    if (crashChannel && typeof BroadcastChannel !== "undefined") {
      // A pool worker that panics or traps leaves the worker blocked in Atomics.wait for
      // ever: it cannot answer, so the crash comes this way and the worker is ended.
      this.crashes = new BroadcastChannel(crashChannel);
      this.crashes.onmessage = (ev: MessageEvent<{ type?: string; message?: string }>) => {
        if (ev.data?.type !== "crash") return;
        const what = String(ev.data.message ?? "a thread-pool worker crashed");
        this.kill(new WebPeftError("crash", `the wasm core crashed (${what}); this model is gone, load it again`, "wasm"));
        this.terminate();
      };
    }
    worker.addEventListener("error", (ev: ErrorEvent) => {
      ev.preventDefault?.();
      const what = ev.message || (ev.error && String(ev.error)) || "the worker script failed to load or threw";
      this.kill(new WebPeftError("crash", `webpeft worker: ${what}`, "worker"));
    });
    worker.addEventListener("messageerror", () => {
      this.kill(new WebPeftError("crash", "webpeft worker: a message could not be read", "worker"));
    });
  }

  private onMessage(m: ResponseMessage) {
    if (m.type === "crash") {
      this.kill(WebPeftError.fromPayload(m.error));
      return;
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    if (p.aborted && m.type !== "result" && m.type !== "error") return;
    switch (m.type) {
      case "result":
        this.pending.delete(m.id);
        // Finished before the worker saw the abort: still an abort, as fetch does.
        if (p.aborted) p.reject(p.aborted);
        else p.resolve(m.result);
        break;
      case "error": {
        this.pending.delete(m.id);
        const e = WebPeftError.fromPayload(m.error);
        p.reject(p.aborted && e.kind !== "aborted" && e.kind !== "crash" ? p.aborted : e);
        break;
      }
      case "event":
        p.onEvent?.(m.event);
        break;
      case "token":
        try {
          p.onToken?.(m.text);
        } catch (e) {
          console.error("webpeft: onToken threw", e);
        }
        break;
      case "progress":
        try {
          p.onProgress?.(m.progress);
        } catch (e) {
          console.error("webpeft: onProgress threw", e);
        }
        break;
    }
  }

  kill(err: WebPeftError) {
    if (!this.dead) this.dead = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  /**
   * Sends a request. When `signal` fires, the worker is told to stop it (between
   * tokens, texts or download chunks) and the promise rejects with kind "aborted"
   * once the worker has stopped.
   */
  request<T>(req: Request, hooks: Omit<Pending, "resolve" | "reject" | "aborted"> = {}, transfer: Transferable[] = [], signal?: AbortSignal): Promise<T> {
    if (this.dead) return Promise.reject(this.dead);
    if (signal?.aborted) return Promise.reject(abortedError(req.op));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        const p = this.pending.get(id);
        if (!p || p.aborted) return;
        p.aborted = abortedError(req.op);
        try {
          this.worker.postMessage({ op: "abort", target: id, id: 0 });
        } catch {
          // The worker is gone; kill() settles the request.
        }
      };
      const settle = <A extends unknown[]>(f: (...a: A) => void) => (...a: A) => {
        signal?.removeEventListener("abort", onAbort);
        f(...a);
      };
      this.pending.set(id, { resolve: settle(resolve), reject: settle(reject), ...hooks });
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        this.worker.postMessage({ ...req, id }, transfer);
      } catch (e) {
        this.pending.get(id)?.reject(new WebPeftError("input", `could not send ${req.op} to the worker: ${(e as Error).message}`, req.op));
        this.pending.delete(id);
      }
    });
  }

  terminate() {
    this.worker.terminate();
    this.crashes?.close();
    this.crashes = null;
  }
}

/** A BroadcastChannel name of one worker's own, for its thread pool's crash reports. */
function crashChannelName(): string {
  const id = typeof crypto !== "undefined" && "randomUUID" in crypto ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  return `webpeft-crash-${id}`;
}

/** Picks the backend for "auto" (and checks an explicit "webgpu") on the main thread. */
const QUANTIZE: readonly Quantize[] = ["none", "f32", "q8_0", "q4_0"];

/** The `quantize` option, checked (the core checks it again). */
function optQuantize(q: unknown): Quantize | undefined {
  if (q === undefined) return undefined;
  if (typeof q === "string" && (QUANTIZE as readonly string[]).includes(q)) return q as Quantize;
  throw new WebPeftError("input", `quantize: ${JSON.stringify(q)} is not one of ${QUANTIZE.join(", ")}`, "quantize");
}

async function chooseBackend(choice: LoadOptions["backend"]): Promise<{ backend: Backend; notice?: string; fallbackToCpu: boolean }> {
  if (choice === "cpu") return { backend: "cpu", fallbackToCpu: false };
  const gpu = (globalThis.navigator as Navigator & { gpu?: any })?.gpu;
  if (choice === "webgpu") {
    if (!gpu) throw new WebPeftError("device", "device: WebGPU is unavailable in this browser (navigator.gpu is missing)", "device");
    return { backend: "webgpu", fallbackToCpu: false };
  }
  if (choice !== undefined && choice !== "auto") {
    throw new WebPeftError("input", `backend: "${choice}" is not one of "auto", "webgpu", "cpu"`, "backend");
  }
  if (!gpu) return { backend: "cpu", fallbackToCpu: false, notice: "WebGPU unavailable (this browser has no navigator.gpu); using the CPU backend" };
  let adapter: any = null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    return { backend: "cpu", fallbackToCpu: false, notice: `WebGPU unavailable (requestAdapter failed: ${(e as Error).message}); using the CPU backend` };
  }
  if (!adapter) return { backend: "cpu", fallbackToCpu: false, notice: "WebGPU unavailable (no adapter); using the CPU backend" };
  const info = adapter.info ?? {};
  const fallback = info.isFallbackAdapter ?? adapter.isFallbackAdapter;
  if (info.architecture === "swiftshader" || (fallback && info.vendor === "google") || fallback === true) {
    return {
      backend: "cpu",
      fallbackToCpu: false,
      notice: `WebGPU unavailable in hardware (the adapter is a software renderer, ${info.architecture || "fallback"}); using the CPU backend, which is faster here`,
    };
  }
  return { backend: "webgpu", fallbackToCpu: true };
}

// ---- argument checks: a wrong shape is a WebPeftError of kind "input", never a TypeError ----

function bad(what: string, message: string): never {
  throw new WebPeftError("input", `${what}: ${message}`, what);
}

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

function show(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 80 ? v.slice(0, 80) + "..." : v);
  if (typeof v === "function") return "a function";
  if (Array.isArray(v)) return "an array";
  if (v === null) return "null";
  if (typeof v === "object") return (v as object).constructor?.name ? `a ${(v as object).constructor.name}` : "an object";
  return String(v);
}

/** The options argument: undefined or a plain object. */
function optionsOf<T>(v: T | undefined, what: string): Partial<T> {
  if (v === undefined || v === null) return {};
  if (!isRecord(v)) bad(what, `expected an options object, got ${show(v)}`);
  return v as Partial<T>;
}

function optBool(v: unknown, what: string): boolean | undefined {
  if (v !== undefined && typeof v !== "boolean") bad(what, `expected true or false, got ${show(v)}`);
  return v as boolean | undefined;
}

function optFn<F>(v: F | undefined, what: string): F | undefined {
  if (v !== undefined && typeof v !== "function") bad(what, `expected a function, got ${show(v)}`);
  return v;
}

function optNumber(v: unknown, what: string, { min = -Infinity, max = Infinity, integer = false, exclusiveMin = false } = {}): number | undefined {
  if (v === undefined) return undefined;
  const ok = typeof v === "number" && Number.isFinite(v) && (!integer || Number.isInteger(v)) && (exclusiveMin ? v > min : v >= min) && v <= max;
  if (!ok) {
    const range = `${exclusiveMin ? ">" : ">="} ${min}${max < Infinity ? ` and <= ${max}` : ""}`;
    bad(what, `expected ${integer ? "an integer" : "a number"} ${range}, got ${show(v)}`);
  }
  return v as number;
}

function optSignal(v: unknown, what = "signal"): AbortSignal | undefined {
  if (v === undefined) return undefined;
  const ok = typeof AbortSignal !== "undefined"
    ? v instanceof AbortSignal
    : isRecord(v) && typeof v.aborted === "boolean" && typeof v.addEventListener === "function";
  if (!ok) bad(what, `expected an AbortSignal (from an AbortController), got ${show(v)}`);
  return v as AbortSignal;
}

/** A URL option resolved against the page (the worker's own location differs). */
function resolved(url: string | URL | undefined, what: string): string | undefined {
  if (url === undefined) return undefined;
  if (typeof url !== "string" && !(url instanceof URL)) bad(what, `expected a URL string or URL, got ${show(url)}`);
  try {
    return new URL(url, typeof location !== "undefined" ? location.href : undefined).href;
  } catch {
    bad(what, `${show(String(url))} is not a valid URL`);
  }
}

const ROLES = ["system", "user", "assistant"];

/** A checked copy of chat messages. */
function chatMessages(messages: unknown): ChatMessage[] {
  if (!Array.isArray(messages) || !messages.length) bad("messages", `expected a non-empty array of { role, content }, got ${show(messages)}`);
  return (messages as unknown[]).map((m, i) => {
    if (!isRecord(m)) bad(`messages[${i}]`, `expected { role, content }, got ${show(m)}`);
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== "string" || !ROLES.includes(role)) bad(`messages[${i}].role`, `expected "system", "user" or "assistant", got ${show(role)}`);
    if (typeof content !== "string") bad(`messages[${i}].content`, `expected a string, got ${show(content)}`);
    return { role: role as ChatMessage["role"], content: content as string };
  });
}

function isBlob(v: unknown): v is Blob {
  return typeof Blob !== "undefined" && v instanceof Blob;
}

/** Named file contents from `File[]` or `{ name: bytes | Blob }`. */
function namedFiles(files: unknown, what: string): { names: string[]; blobs: (Blob | Uint8Array)[] } {
  const names: string[] = [];
  const blobs: (Blob | Uint8Array)[] = [];
  const f = typeof FileList !== "undefined" && files instanceof FileList ? [...files] : files;
  if (Array.isArray(f)) {
    f.forEach((x, i) => {
      const name = isBlob(x) ? (x as Partial<File>).name : undefined;
      if (!isBlob(x) || typeof name !== "string" || !name) bad(`${what}[${i}]`, `expected a File (a Blob with a name), got ${show(x)}`);
      names.push(name);
      blobs.push(x);
    });
  } else if (isRecord(f)) {
    for (const [name, x] of Object.entries(f)) {
      if (x instanceof Uint8Array || isBlob(x)) blobs.push(x);
      else if (x instanceof ArrayBuffer) blobs.push(new Uint8Array(x));
      else bad(`${what}["${name}"]`, `expected a Uint8Array, ArrayBuffer or Blob, got ${show(x)}`);
      names.push(name);
    }
  } else {
    bad(what, `expected File[] or { "file name": Uint8Array }, got ${show(f)}`);
  }
  if (!names.length) bad(what, "no files given");
  return { names, blobs };
}

function modelPayload(src: ModelSource, opts: LoadOptions): { model: ModelPayload; transfer: Transferable[] } {
  const source = src as unknown as Record<string, unknown>;
  if (typeof source === "string") {
    bad("source", `expected { hub: ${JSON.stringify(source)} }, { urls } or { files }, got a string`);
  }
  if (!isRecord(source)) bad("source", `expected { files }, { urls } or { hub }, got ${show(source)}`);
  const kinds = (["files", "urls", "hub"] as const).filter((k) => source[k] !== undefined);
  if (kinds.length !== 1) bad("source", `give exactly one of { files }, { urls } or { hub }${kinds.length ? ` (got ${kinds.join(" and ")})` : ""}`);
  if (kinds[0] === "files") {
    const { names, blobs } = namedFiles(source.files, "files");
    return { model: { kind: "files", names, blobs }, transfer: [] };
  }
  if (kinds[0] === "urls") {
    const urls = source.urls as unknown;
    if (!Array.isArray(urls) || !urls.length) bad("urls", `expected a non-empty array of URLs, got ${show(urls)}`);
    return { model: { kind: "urls", urls: urls.map((u, i) => resolved(u, `urls[${i}]`)!) }, transfer: [] };
  }
  const repo = checkRepo(source.hub, "hub");
  const revision = checkRevision(source.revision);
  const file = source.file === undefined ? undefined : checkRepoPath(source.file, "file");
  return {
    model: { kind: "hub", repo, revision, file, endpoint: checkEndpoint(opts.endpoint), token: checkToken(opts.token) },
    transfer: [],
  };
}

const encoder = new TextEncoder();

function guessFormat(text: string): "jsonl" | "csv" | "txt" {
  const t = text.trimStart();
  if (t.startsWith("{")) return "jsonl";
  const first = t.split(/\r?\n/, 1)[0] ?? "";
  if (/^"?text"?\s*,|,\s*"?label"?\s*$/i.test(first)) return "csv";
  return "txt";
}

function dataPayload(data: DataInput, format?: "jsonl" | "csv" | "txt"): DataPayload {
  if (typeof File !== "undefined" && data instanceof File) return { name: data.name, blob: data };
  if (data instanceof Blob) {
    const t = data.type;
    const ext = format ?? (/csv/.test(t) ? "csv" : /json/.test(t) ? "jsonl" : /text\/plain/.test(t) ? "txt" : "jsonl");
    return { name: `data.${ext}`, blob: data };
  }
  if (typeof data === "string") return { name: `data.${format ?? guessFormat(data)}`, bytes: encoder.encode(data) };
  if (Array.isArray(data)) {
    return { name: "data.jsonl", bytes: encoder.encode(data.map((r) => JSON.stringify(r)).join("\n") + "\n") };
  }
  throw new WebPeftError("input", "data: give a File, a Blob, a string or an array of objects", "data");
}

/**
 * Every event of a run; each iteration starts from the first event. When the run fails,
 * an iteration throws its error after the events that came before it.
 */
class EventLog implements AsyncIterable<TrainEvent> {
  private items: (TrainEvent | null)[] = [];
  private closed = false;
  private error: unknown = undefined;
  private failed = false;
  private waiters: (() => void)[] = [];

  private lastCheckpoint = -1;

  push(e: TrainEvent) {
    // Only the newest checkpoint is kept for replay (each holds the adapter and the
    // optimiser state); a reader already past an older one has seen it.
    if (e.event === "checkpoint") {
      if (this.lastCheckpoint >= 0) this.items[this.lastCheckpoint] = null;
      this.lastCheckpoint = this.items.length;
    }
    this.items.push(e);
    this.wake();
  }
  close() {
    this.closed = true;
    this.wake();
  }
  /** Ends the log with the run's error, which every iteration throws at its end. */
  fail(e: unknown) {
    this.error = e;
    this.failed = true;
    this.close();
  }
  private wake() {
    for (const w of this.waiters.splice(0)) w();
  }
  async *[Symbol.asyncIterator](): AsyncIterator<TrainEvent> {
    let i = 0;
    for (;;) {
      if (i < this.items.length) {
        const e = this.items[i++];
        if (e) yield e;
      } else if (this.closed) {
        if (this.failed) throw this.error;
        return;
      } else {
        await new Promise<void>((r) => this.waiters.push(r));
      }
    }
  }
}

/** A model loaded in a worker, ready to train, generate, classify and export adapters. */
export class Tuner {
  readonly info: ModelInfo;
  readonly device: DeviceInfo;
  #conn: Connection;
  #disposed = false;

  private constructor(conn: Connection, info: ModelInfo, device: DeviceInfo) {
    this.#conn = conn;
    this.info = info;
    this.device = device;
  }

  /**
   * Loads a model (files, URLs or a Hub repository) into a new worker. Every failure,
   * including a wrong argument, is a `WebPeftError`; `opts.signal` cancels the
   * downloads and rejects with kind "aborted".
   */
  static async load(source: ModelSource, opts: LoadOptions = {}): Promise<Tuner> {
    try {
      return await Tuner.#load(source, opts);
    } catch (e) {
      throw asWebPeftError(e, "load");
    }
  }

  static async #load(source: ModelSource, options: LoadOptions | undefined): Promise<Tuner> {
    const opts = optionsOf(options, "options") as LoadOptions;
    if (opts.threads !== undefined && !(Number.isInteger(opts.threads) && opts.threads >= 1)) {
      throw new WebPeftError("input", `threads: ${opts.threads} is not a positive integer`, "threads");
    }
    const signal = optSignal(opts.signal);
    const onProgress = optFn(opts.onProgress, "onProgress");
    const maxBytes = optNumber(opts.maxBytes, "maxBytes", { min: 0, exclusiveMin: true });
    const maxTensorBytes = optNumber(opts.maxTensorBytes, "maxTensorBytes", { min: 0, exclusiveMin: true });
    const quantize = optQuantize(opts.quantize);
    // Checked (and resolved against the page: the worker's own location is not the page's) before anything starts.
    const wasmUrl = resolved(opts.wasmUrl, "wasmUrl");
    const threadsUrl = resolved(opts.threadsUrl, "threadsUrl");
    const url = opts.workerUrl === undefined ? new URL("./worker.js", import.meta.url) : resolved(opts.workerUrl, "workerUrl")!;
    checkEndpoint(opts.endpoint);
    checkToken(opts.token);
    const { model, transfer } = modelPayload(source, opts);
    if (signal?.aborted) throw abortedError("load");
    const { backend, notice, fallbackToCpu } = await chooseBackend(opts.backend);
    if (signal?.aborted) throw abortedError("load");
    let worker: Worker;
    try {
      worker = new Worker(url, { type: "module", name: "webpeft" });
    } catch (e) {
      throw new WebPeftError("io", `worker: could not start ${String(url)} (${(e as Error).message})`, "worker");
    }
    const crashChannel = crashChannelName();
    const conn = new Connection(worker, crashChannel);
    // The worker is this load's own: an abort ends it at once, downloads included.
    const onAbort = () => {
      conn.kill(abortedError("load"));
      conn.terminate();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const r = await conn.request<{ info: ModelInfo; device: DeviceInfo }>(
        { op: "load", backend, fallbackToCpu, notice, model, maxBytes, maxTensorBytes, quantize, wasmUrl, threads: opts.threads, threadsUrl, crashChannel },
        { onProgress },
        transfer,
      );
      return new Tuner(conn, r.info, r.device);
    } catch (e) {
      conn.terminate();
      throw e;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * A Hub repository's files at a revision (default "main") and the commit it
   * resolved to, e.g. to let a user pick a GGUF quantisation:
   * `(await Tuner.listFiles("owner/name", { suffix: ".gguf" })).files`.
   */
  static async listFiles(repo: string, options: ListFilesOptions = {}): Promise<HubRepoInfo> {
    try {
      const opts = optionsOf(options, "options") as ListFilesOptions;
      const suffix = opts.suffix;
      if (suffix !== undefined && typeof suffix !== "string") bad("suffix", `expected a string like ".gguf", got ${show(suffix)}`);
      const info = await repoInfo(
        {
          repo: checkRepo(repo, "repo"),
          revision: checkRevision(opts.revision),
          endpoint: checkEndpoint(opts.endpoint),
          token: checkToken(opts.token),
          signal: optSignal(opts.signal),
        },
        await openCache(),
      );
      if (suffix) info.files = info.files.filter((f) => f.path.toLowerCase().endsWith(suffix.toLowerCase()));
      return info;
    } catch (e) {
      throw asWebPeftError(e, "listFiles");
    }
  }

  /**
   * Deletes the Hub downloads kept in Cache Storage: all of them, or one
   * repository's. Resolves to the number of cache entries removed.
   */
  static async clearCache(repo?: string): Promise<number> {
    try {
      return await clearCache(repo);
    } catch (e) {
      throw asWebPeftError(e, "clearCache");
    }
  }

  /**
   * The memory plan of loading `source` and, with `trainOptions`, training it: weights,
   * the host copy while loading, adapter and optimiser state, activations and the LM
   * head's logits, checked against `opts` (default: the CPU backend in wasm32's 4 GiB).
   * Reads only the files' headers (HTTP Range requests for URLs and the Hub); nothing is
   * loaded. A plan that does not fit has `fits: false` and a typed `error`.
   */
  static async plan(source: ModelSource, trainOptions?: Partial<TrainOptions>, opts: PlanOptions = {}): Promise<MemoryPlan> {
    const { model } = modelPayload(source, { token: opts.token, endpoint: opts.endpoint });
    return withOwnWorker(opts.workerUrl, "webpeft-plan", async (conn) => {
      const options = trainOptions ? ({ ...trainOptions } as Record<string, unknown>) : undefined;
      const plan = await conn.request<MemoryPlan | undefined>({ op: "plan", model, options, backend: opts.backend ?? "cpu", maxBytes: opts.maxBytes, maxTensorBytes: opts.maxTensorBytes, quantize: optQuantize(opts.quantize), wasmUrl: resolved(opts.wasmUrl, "wasmUrl") });
      if (!plan) throw new WebPeftError("unsupported", "plan: this build of the core has no planModel", "plan");
      return plan;
    });
  }

  /**
   * Checks training data with the core's parser, without a model (in a worker of its own,
   * like `plan`): the detected format, the rows and labels, and every problem with its file
   * and line, as training would report them. No token counts: `tuner.validateData` has the
   * model's tokenizer. A wrong argument is a `WebPeftError`; problems in the data are not
   * errors but `problems` in the result.
   */
  static async validateData(data: DataInput, options: ValidateDataOptions = {}): Promise<DataValidation> {
    try {
      const { payload, opts } = validateRequest(data, options);
      return await withOwnWorker(opts.workerUrl, "webpeft-validate", (conn) =>
        conn.request<DataValidation>({ ...payload, wasmUrl: resolved(opts.wasmUrl, "wasmUrl") }),
      );
    } catch (e) {
      throw asWebPeftError(e, "validateData");
    }
  }

  /**
   * Checks training data as `Tuner.validateData` does, and also encodes it with this model's
   * tokenizer for `options.task` (the chat template of `messages` rows, truncation at
   * `options.seqLen`), as training would: `tokens` holds the counts, `warnings` the truncated
   * or skipped rows, and a row the template or tokenizer cannot take is a problem. The model
   * and its adapter are not touched. Not while training.
   */
  async validateData(data: DataInput, options: ValidateDataOptions = {}): Promise<DataValidation> {
    try {
      this.#check();
      const { payload } = validateRequest(data, options);
      return await this.#conn.request<DataValidation>(payload);
    } catch (e) {
      throw asWebPeftError(e, "validateData");
    }
  }

  #check(): void {
    if (this.#disposed) throw new WebPeftError("input", "this Tuner was disposed", "tuner");
  }

  /**
   * Starts training an adapter. Events stream through `run.events`; `run.done` gives the summary.
   * If the run fails, `run.done` rejects and iterating `run.events` throws the same error (after
   * the events before it). A run that fails to start leaves the model and its adapter as they
   * were; one that fails at a later step keeps the adapter of its last good step.
   * `options.adapter` chooses between a new adapter and the attached one (see `TrainOptions`).
   * With `options.checkpointEvery` the run emits `checkpoint` events; `resume.resumeFrom` continues
   * from one (on a model without an adapter, with the same data and options). `resume.signal`
   * cancels the run when it fires, as `cancel()` does.
   */
  train(data: DataInput, options: TrainOptions, evalData?: DataInput, resume: TrainResume = {}): TrainRun {
    const log = new EventLog();
    const ctl = (op: "pause" | "resume" | "cancel") => () => this.#conn.request<void>({ op });
    const onAbort = () => void ctl("cancel")().catch(() => {});
    let done: Promise<TrainSummary>;
    let signal: AbortSignal | undefined;
    try {
      this.#check();
      signal = optSignal(resume?.signal, "signal");
      if (!isRecord(options)) bad("options", `expected the training options object ({ task, method, ... }), got ${show(options)}`);
      const payload = dataPayload(data, options.dataFormat);
      const evalPayload = evalData !== undefined ? dataPayload(evalData, options.dataFormat) : undefined;
      if (signal?.aborted) throw abortedError("train");
      done = this.#conn.request<TrainSummary>(
        {
          op: "train",
          data: payload,
          evalData: evalPayload,
          options: options as unknown as Record<string, unknown>,
          ...(resume?.resumeFrom !== undefined ? { resumeFrom: resume.resumeFrom } : {}),
        },
        {
          onEvent: (e) => {
            log.push(e);
            // A cancel sent before the worker had opened the run finds no run: send it again.
            if (e.event === "start" && signal?.aborted) onAbort();
          },
        },
      );
    } catch (e) {
      done = Promise.reject(asWebPeftError(e, "train"));
    }
    // An AbortSignal stops the run as cancel() does, between two steps.
    signal?.addEventListener("abort", onAbort, { once: true });
    done.then(
      () => log.close(),
      (e) => log.fail(e),
    ).finally(() => signal?.removeEventListener("abort", onAbort));
    return { events: log, done, pause: ctl("pause"), resume: ctl("resume"), cancel: ctl("cancel") };
  }

  /**
   * Drops the adapter (trained or loaded): the model is the base model as loaded again, and
   * the next `train` creates a new adapter. Not while training.
   */
  async resetAdapter(): Promise<void> {
    this.#check();
    await this.#conn.request<void>({ op: "resetAdapter" });
  }

  /**
   * Generates text from a prompt (greedy unless temperature > 0). `opts.signal`
   * stops it before the next token: the promise rejects with kind "aborted".
   */
  async generate(prompt: string, options: GenerateOptions = {}): Promise<string> {
    this.#check();
    if (typeof prompt !== "string") bad("prompt", `expected a string, got ${show(prompt)}`);
    const opts = optionsOf(options, "options") as GenerateOptions;
    const request = {
      op: "generate" as const,
      prompt,
      chat: optBool(opts.chat, "chat") ?? false,
      maxNewTokens: optNumber(opts.maxNewTokens, "maxNewTokens", { min: 1, integer: true }) ?? 64,
      temperature: optNumber(opts.temperature, "temperature", { min: 0 }) ?? 0,
      topP: optNumber(opts.topP, "topP", { min: 0, max: 1, exclusiveMin: true }) ?? 1,
      seed: optNumber(opts.seed, "seed", { min: 0, max: 2 ** 32 - 1, integer: true }) ?? 0,
      adapter: optBool(opts.adapter, "adapter") ?? true,
    };
    const onToken = optFn(opts.onToken, "onToken");
    return this.#conn.request<string>(request, { onToken }, [], optSignal(opts.signal));
  }

  /**
   * The next assistant turn after `messages` (`{ role: "system" | "user" | "assistant", content }[]`),
   * rendered with the model's chat template. The reply is a promise of the whole text and also an
   * async iterable of its pieces (`for await (const piece of tuner.chat(messages))`); `opts.onToken`
   * is called with each piece too. `opts.signal` stops it before the next token (kind "aborted").
   */
  chat(messages: ChatMessage[], options: ChatOptions = {}): ChatReply {
    this.#check();
    const msgs = chatMessages(messages);
    const opts = optionsOf(options, "options") as ChatOptions & { chat?: unknown };
    if (opts.chat !== undefined) bad("chat", "chat() always uses the chat template; leave out `chat`");
    const request = {
      op: "chat" as const,
      messages: msgs,
      maxNewTokens: optNumber(opts.maxNewTokens, "maxNewTokens", { min: 1, integer: true }) ?? 64,
      temperature: optNumber(opts.temperature, "temperature", { min: 0 }) ?? 0,
      topP: optNumber(opts.topP, "topP", { min: 0, max: 1, exclusiveMin: true }) ?? 1,
      seed: optNumber(opts.seed, "seed", { min: 0, max: 2 ** 32 - 1, integer: true }) ?? 0,
      adapter: optBool(opts.adapter, "adapter") ?? true,
    };
    const userOnToken = optFn(opts.onToken, "onToken");
    const signal = optSignal(opts.signal);
    // Pieces not yet taken by the iterator, and the iterator's waiting read.
    const queue: string[] = [];
    let wake: (() => void) | undefined;
    let finished = false;
    let failure: { error: unknown } | undefined;
    const onToken = (t: string) => {
      queue.push(t);
      wake?.();
      userOnToken?.(t);
    };
    const done = this.#conn.request<string>(request, { onToken }, [], signal);
    done.then(
      () => { finished = true; wake?.(); },
      (e) => { finished = true; failure = { error: e }; wake?.(); },
    );
    const reply = done as ChatReply;
    reply[Symbol.asyncIterator] = async function* () {
      for (;;) {
        if (queue.length) {
          yield queue.shift()!;
          continue;
        }
        if (finished) {
          if (failure) throw failure.error;
          return;
        }
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
    };
    return reply;
  }

  /** The chat template's rendering of `messages` (the text `chat` generates after, with `addGenerationPrompt`, the default). */
  async renderChat(messages: ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): Promise<string> {
    this.#check();
    const msgs = chatMessages(messages);
    const opts = optionsOf(options, "options") as { addGenerationPrompt?: boolean };
    const addGenerationPrompt = optBool(opts.addGenerationPrompt, "addGenerationPrompt") ?? true;
    return this.#conn.request<string>({ op: "renderChat", messages: msgs, addGenerationPrompt });
  }

  /**
   * Train options picked for this model and `rows` rows of data (the count `validateData`
   * reports), with one sentence saying what was chosen and why: LoRA r 8, enough passes over
   * small data for about 60 steps, a learning rate per task, a fifth held out for evaluation
   * when there are 10 rows or more, and gradient checkpointing above 0.3B parameters. `task`
   * defaults to the model's. A "Train" button can pass `options` to `train` as they are.
   * `heldOut`: how many of the rows the caller holds out itself (for example a per-class split
   * passed to `train` as `evalData`); the sentence and the passes then count the rest.
   */
  async suggestOptions(data: { rows: number; task?: Task; heldOut?: number }): Promise<TrainSuggestion> {
    this.#check();
    const opts = optionsOf(data, "data") as { rows: number; task?: Task; heldOut?: number };
    const rows = optNumber(opts.rows, "rows", { min: 1, integer: true });
    if (rows === undefined) bad("rows", "expected the number of rows of data, got undefined");
    const heldOut = optNumber(opts.heldOut, "heldOut", { min: 0, integer: true });
    if (opts.task !== undefined && opts.task !== "causal-lm" && opts.task !== "seq-cls") bad("task", `expected "causal-lm" or "seq-cls", got ${show(opts.task)}`);
    return this.#conn.request<TrainSuggestion>({ op: "suggest", task: opts.task, rows: rows!, heldOut });
  }

  /** Token ids of `text` with the model's tokenizer (with its special tokens, such as BOS, unless `specialTokens: false`). */
  async tokenize(text: string, options: TokenizeOptions = {}): Promise<number[]> {
    this.#check();
    if (typeof text !== "string") bad("text", `expected a string, got ${show(text)}`);
    const opts = optionsOf(options, "options") as TokenizeOptions;
    const specialTokens = optBool(opts.specialTokens, "specialTokens") ?? true;
    return this.#conn.request<number[]>({ op: "tokenize", text, specialTokens });
  }

  /**
   * Labels and class probabilities for each text (classification models and seq-cls
   * adapters). `opts.signal` stops it before the next text (kind "aborted").
   */
  async classify(texts: string[], options: ClassifyOptions = {}): Promise<Classification[]> {
    this.#check();
    if (!Array.isArray(texts) || texts.some((t) => typeof t !== "string")) {
      bad("texts", `expected an array of strings, got ${Array.isArray(texts) ? `an array holding ${show(texts.find((t) => typeof t !== "string"))}` : show(texts)}`);
    }
    const opts = optionsOf(options, "options") as ClassifyOptions;
    const adapter = optBool(opts.adapter, "adapter") ?? true;
    return this.#conn.request<Classification[]>({ op: "classify", texts, adapter }, {}, [], optSignal(opts.signal));
  }

  /** Logits of one forward pass, flattened ([seq, vocab], or [num_labels] for a classifier). */
  async forward(tokenIds: number[] | Uint32Array): Promise<Float32Array> {
    this.#check();
    const ok = (Array.isArray(tokenIds) || tokenIds instanceof Uint32Array) && tokenIds.length > 0;
    if (!ok) bad("tokenIds", `expected a non-empty array of token ids, got ${show(tokenIds)}`);
    const ids = Array.from(tokenIds as ArrayLike<number>);
    const badId = ids.find((v) => !(Number.isInteger(v) && v >= 0 && v < 2 ** 32));
    if (badId !== undefined) bad("tokenIds", `${show(badId)} is not a token id (a non-negative integer)`);
    return this.#conn.request<Float32Array>({ op: "forward", ids });
  }

  /** The adapter as a zip: adapter_config.json, adapter_model.safetensors, webpeft.json, README.md. */
  async exportAdapter(): Promise<Blob> {
    this.#check();
    const zip = await this.#conn.request<Uint8Array>({ op: "exportZip" });
    return new Blob([zip as BlobPart], { type: "application/zip" });
  }

  /**
   * A LoRA adapter as llama.cpp's GGUF LoRA, for llama.cpp (`--lora adapter.gguf`), Ollama
   * (`ADAPTER ./adapter.gguf` in a Modelfile) or wllama, on a Llama, Qwen2, Qwen3 or Gemma 3
   * base. Other methods, DoRA and other families are an `unsupported` error.
   */
  async exportAdapterGguf(): Promise<Blob> {
    this.#check();
    const gguf = await this.#conn.request<Uint8Array>({ op: "exportGguf" });
    return new Blob([gguf as BlobPart], { type: "application/octet-stream" });
  }

  /**
   * "Continue on a GPU machine": the paused training run, where it stands, as a zip
   * (`webpeft-job/`) that transformers' Trainer + PEFT continue (`accelerate launch train.py`):
   * the PEFT adapter and the optimiser state under PEFT's names, the data as given and as
   * encoded with the run's batches in order, `job.json` with the settings mapped one to one,
   * `train.py`, `requirements.txt` and a README. Only while the run is paused (`run.pause()`);
   * otherwise an `input` error. Not for DP runs (`unsupported`: the accounting would not carry
   * over).
   */
  async exportGpuJob(): Promise<Blob> {
    this.#check();
    const zip = await this.#conn.request<Uint8Array>({ op: "gpuJob" });
    return new Blob([zip as BlobPart], { type: "application/zip" });
  }

  /** The adapter's files by name. */
  async exportAdapterFiles(): Promise<Record<string, Uint8Array>> {
    this.#check();
    return this.#conn.request<Record<string, Uint8Array>>({ op: "exportFiles" });
  }

  /**
   * Loads a PEFT adapter onto the model: its files, a zip of them, or the zip `Blob`
   * that `exportAdapter()` returns. A zip without `adapter_config.json` and
   * `adapter_model.safetensors` is a `format` error naming the missing file.
   */
  async loadAdapter(files: Blob | File[] | Record<string, Uint8Array | Blob>): Promise<void> {
    this.#check();
    const { names, blobs } = isBlob(files)
      ? { names: [typeof (files as File).name === "string" && (files as File).name ? (files as File).name : "adapter.zip"], blobs: [files] }
      : namedFiles(files, "files");
    await this.#conn.request<void>({ op: "loadAdapter", names, blobs });
  }

  /**
   * Measures training speed on this device: LoRA steps on fixed pseudo-random tokens (the
   * workload of the native `webpeft bench train`) on a copy of the model, plus an f32 matmul
   * GFLOPS probe. The model and its adapter are left as they were. Not while training.
   */
  async benchmark(options: BenchmarkOptions = {}): Promise<BenchmarkResult> {
    this.#check();
    const opts = optionsOf(options, "options") as BenchmarkOptions;
    if (opts.task !== undefined && opts.task !== "causal-lm" && opts.task !== "seq-cls") bad("task", `expected "causal-lm" or "seq-cls", got ${show(opts.task)}`);
    const task: Task = opts.task ?? (this.info.modelType === "bert" ? "seq-cls" : "causal-lm");
    // batch and seq default in the core (webpeft::bench::default_shape), as for `webpeft bench train`.
    const request = { op: "benchmark" as const, task, batch: opts.batch, seq: opts.seq, steps: opts.steps ?? 3, matmulSize: opts.matmulSize ?? 1024 };
    for (const k of ["batch", "seq", "steps", "matmulSize"] as const) {
      const v = request[k];
      if (v !== undefined && (!Number.isInteger(v) || v < (k === "matmulSize" ? 0 : 1))) {
        throw new WebPeftError("input", `${k}: ${v} is not a ${k === "matmulSize" ? "non-negative" : "positive"} integer`, "benchmark");
      }
    }
    return this.#conn.request<BenchmarkResult>(request);
  }

  // Test hook, not API: `tuner[Symbol.for("webpeft.test.panicOnThreadPool")]()` panics on a
  // thread-pool worker of the threads build (tests/web/crash.test.mjs).
  static {
    Object.defineProperty(Tuner.prototype, Symbol.for("webpeft.test.panicOnThreadPool"), {
      value(this: Tuner) {
        return this.#conn.request<void>({ op: "panicOnThreadPool" });
      },
    });
  }

  /** Frees the model and stops the worker. Later calls fail with kind "input". */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#conn.kill(new WebPeftError("input", "this Tuner was disposed", "tuner"));
    this.#conn.terminate();
  }
}

/** Runs `f` on a worker of its own (no model), ended afterwards. */
async function withOwnWorker<T>(workerUrl: string | URL | undefined, name: string, f: (conn: Connection) => Promise<T>): Promise<T> {
  const url = workerUrl === undefined ? new URL("./worker.js", import.meta.url) : resolved(workerUrl, "workerUrl")!;
  let worker: Worker;
  try {
    worker = new Worker(url, { type: "module", name });
  } catch (e) {
    throw new WebPeftError("io", `worker: could not start ${String(url)} (${(e as Error).message})`, "worker");
  }
  const conn = new Connection(worker);
  try {
    return await f(conn);
  } finally {
    conn.terminate();
  }
}

/** The checked request of `validateData`. */
function validateRequest(data: DataInput, options: ValidateDataOptions) {
  const opts = optionsOf(options, "options") as ValidateDataOptions;
  const task = opts.task;
  if (task !== undefined && task !== "causal-lm" && task !== "seq-cls") bad("task", `expected "causal-lm" or "seq-cls", got ${show(task)}`);
  const seqLen = optNumber(opts.seqLen, "seqLen", { min: 2, integer: true });
  const format = opts.dataFormat;
  if (format !== undefined && format !== "jsonl" && format !== "csv" && format !== "txt") bad("dataFormat", `expected "jsonl", "csv" or "txt", got ${show(format)}`);
  const examples = optBool(opts.examples, "examples");
  const payload = { op: "validateData" as const, data: dataPayload(data, format), options: { task, seq_len: seqLen, examples } };
  return { payload, opts };
}

/** Any thrown value as a WebPeftError: ours pass through; anything else is a bug, kind "crash". */
function asWebPeftError(e: unknown, op: string): WebPeftError {
  if (e instanceof WebPeftError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new WebPeftError("crash", `${op}: unexpected failure (${message})`, op);
}

export type { ErrorPayload };
