// webpeft: fine-tune small transformers in the browser with PEFT methods.
// The main-thread API. Every model operation runs in a module worker that
// hosts the wasm core, so the page stays responsive while training.
import { WebPeftError } from "./errors";
import type {
  Backend,
  BenchmarkOptions,
  BenchmarkResult,
  Classification,
  DataInput,
  DataPayload,
  DeviceInfo,
  ErrorPayload,
  GenerateOptions,
  LoadOptions,
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
} from "./types";

export { WebPeftError };
export type * from "./types";

interface Pending {
  resolve: (v: any) => void;
  reject: (e: WebPeftError) => void;
  onEvent?: (e: TrainEvent) => void;
  onToken?: (t: string) => void;
  onProgress?: (p: LoadProgress) => void;
}

/** Request/response over the worker's message port; fails every open request if the worker dies. */
class Connection {
  private nextId = 1;
  private pending = new Map<number, Pending>();
  dead: WebPeftError | null = null;

  constructor(private worker: Worker) {
    worker.addEventListener("message", (ev: MessageEvent<ResponseMessage>) => this.onMessage(ev.data));
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
    switch (m.type) {
      case "result":
        this.pending.delete(m.id);
        p.resolve(m.result);
        break;
      case "error":
        this.pending.delete(m.id);
        p.reject(WebPeftError.fromPayload(m.error));
        break;
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

  request<T>(req: Request, hooks: Omit<Pending, "resolve" | "reject"> = {}, transfer: Transferable[] = []): Promise<T> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, ...hooks });
      try {
        this.worker.postMessage({ ...req, id }, transfer);
      } catch (e) {
        this.pending.delete(id);
        reject(new WebPeftError("input", `could not send ${req.op} to the worker: ${(e as Error).message}`, req.op));
      }
    });
  }

  terminate() {
    this.worker.terminate();
  }
}

/** Picks the backend for "auto" (and checks an explicit "webgpu") on the main thread. */
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

/** A URL option resolved against the page (the worker's own location differs). */
function resolved(url: string | URL | undefined): string | undefined {
  return url === undefined ? undefined : new URL(url, location.href).href;
}

function modelPayload(source: ModelSource): { model: ModelPayload; transfer: Transferable[] } {
  if (source && "files" in source) {
    const f = source.files;
    if (Array.isArray(f)) return { model: { kind: "files", names: f.map((x) => x.name), blobs: f }, transfer: [] };
    const names = Object.keys(f);
    return { model: { kind: "files", names, blobs: names.map((n) => f[n]) }, transfer: [] };
  }
  if (source && "urls" in source) {
    const base = typeof location !== "undefined" ? location.href : undefined;
    return { model: { kind: "urls", urls: source.urls.map((u) => new URL(u, base).href) }, transfer: [] };
  }
  if (source && "hub" in source) {
    if (!/^[\w.-]+(\/[\w.-]+)?$/.test(source.hub)) {
      throw new WebPeftError("input", `hub: "${source.hub}" is not a repository id like "owner/name"`, "hub");
    }
    return { model: { kind: "hub", repo: source.hub, revision: source.revision ?? "main", file: source.file }, transfer: [] };
  }
  throw new WebPeftError("input", "source: give { files }, { urls } or { hub }", "source");
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

/** Every event of a run; each iteration starts from the first event. */
class EventLog implements AsyncIterable<TrainEvent> {
  private items: (TrainEvent | null)[] = [];
  private closed = false;
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

  /** Loads a model (files, URLs or a Hub repository) into a new worker. */
  static async load(source: ModelSource, opts: LoadOptions = {}): Promise<Tuner> {
    if (opts.threads !== undefined && !(Number.isInteger(opts.threads) && opts.threads >= 1)) {
      throw new WebPeftError("input", `threads: ${opts.threads} is not a positive integer`, "threads");
    }
    const { backend, notice, fallbackToCpu } = await chooseBackend(opts.backend);
    const { model, transfer } = modelPayload(source);
    const url = opts.workerUrl ?? new URL("./worker.js", import.meta.url);
    let worker: Worker;
    try {
      worker = new Worker(url, { type: "module", name: "webpeft" });
    } catch (e) {
      throw new WebPeftError("io", `worker: could not start ${String(url)} (${(e as Error).message})`, "worker");
    }
    const conn = new Connection(worker);
    try {
      const r = await conn.request<{ info: ModelInfo; device: DeviceInfo }>(
        // Resolved here: the worker's own location is not the page's.
        { op: "load", backend, fallbackToCpu, notice, model, maxBytes: opts.maxBytes, maxTensorBytes: opts.maxTensorBytes, wasmUrl: resolved(opts.wasmUrl), threads: opts.threads, threadsUrl: resolved(opts.threadsUrl) },
        { onProgress: opts.onProgress },
        transfer,
      );
      return new Tuner(conn, r.info, r.device);
    } catch (e) {
      conn.terminate();
      throw e;
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
    const { model } = modelPayload(source);
    const url = opts.workerUrl ?? new URL("./worker.js", import.meta.url);
    let worker: Worker;
    try {
      worker = new Worker(url, { type: "module", name: "webpeft-plan" });
    } catch (e) {
      throw new WebPeftError("io", `worker: could not start ${String(url)} (${(e as Error).message})`, "worker");
    }
    const conn = new Connection(worker);
    try {
      const options = trainOptions ? ({ ...trainOptions } as Record<string, unknown>) : undefined;
      const plan = await conn.request<MemoryPlan | undefined>({ op: "plan", model, options, backend: opts.backend ?? "cpu", maxBytes: opts.maxBytes, maxTensorBytes: opts.maxTensorBytes, wasmUrl: resolved(opts.wasmUrl) });
      if (!plan) throw new WebPeftError("unsupported", "plan: this build of the core has no planModel", "plan");
      return plan;
    } finally {
      conn.terminate();
    }
  }

  #check(): void {
    if (this.#disposed) throw new WebPeftError("input", "this Tuner was disposed", "tuner");
  }

  /**
   * Starts training an adapter. Events stream through `run.events`; `run.done` gives the summary.
   * With `options.checkpointEvery` the run emits `checkpoint` events; `resume.resumeFrom` continues
   * from one (on a freshly loaded model, with the same data and options).
   */
  train(data: DataInput, options: TrainOptions, evalData?: DataInput, resume: TrainResume = {}): TrainRun {
    const log = new EventLog();
    let done: Promise<TrainSummary>;
    try {
      this.#check();
      const payload = dataPayload(data, options.dataFormat);
      const evalPayload = evalData !== undefined ? dataPayload(evalData, options.dataFormat) : undefined;
      done = this.#conn.request<TrainSummary>(
        {
          op: "train",
          data: payload,
          evalData: evalPayload,
          options: options as unknown as Record<string, unknown>,
          ...(resume?.resumeFrom !== undefined ? { resumeFrom: resume.resumeFrom } : {}),
        },
        { onEvent: (e) => log.push(e) },
      );
    } catch (e) {
      done = Promise.reject(e);
    }
    done.then(
      () => log.close(),
      () => log.close(),
    );
    const ctl = (op: "pause" | "resume" | "cancel") => () => this.#conn.request<void>({ op });
    return { events: log, done, pause: ctl("pause"), resume: ctl("resume"), cancel: ctl("cancel") };
  }

  /** Generates text from a prompt (greedy unless temperature > 0). */
  async generate(prompt: string, opts: GenerateOptions = {}): Promise<string> {
    this.#check();
    return this.#conn.request<string>(
      {
        op: "generate",
        prompt,
        chat: opts.chat ?? false,
        maxNewTokens: opts.maxNewTokens ?? 64,
        temperature: opts.temperature ?? 0,
        topP: opts.topP ?? 1,
        seed: opts.seed ?? 0,
        adapter: opts.adapter ?? true,
      },
      { onToken: opts.onToken },
    );
  }

  /** Labels and class probabilities for each text (classification models and seq-cls adapters). */
  async classify(texts: string[], opts: { adapter?: boolean } = {}): Promise<Classification[]> {
    this.#check();
    return this.#conn.request<Classification[]>({ op: "classify", texts, adapter: opts.adapter ?? true });
  }

  /** Logits of one forward pass, flattened ([seq, vocab], or [num_labels] for a classifier). */
  async forward(tokenIds: number[]): Promise<Float32Array> {
    this.#check();
    return this.#conn.request<Float32Array>({ op: "forward", ids: tokenIds });
  }

  /** The adapter as a zip: adapter_config.json, adapter_model.safetensors, webpeft.json, README.md. */
  async exportAdapter(): Promise<Blob> {
    this.#check();
    const zip = await this.#conn.request<Uint8Array>({ op: "exportZip" });
    return new Blob([zip as BlobPart], { type: "application/zip" });
  }

  /** The adapter's files by name. */
  async exportAdapterFiles(): Promise<Record<string, Uint8Array>> {
    this.#check();
    return this.#conn.request<Record<string, Uint8Array>>({ op: "exportFiles" });
  }

  /** Loads a PEFT adapter (its files, or a zip of them) onto the model. */
  async loadAdapter(files: File[] | Record<string, Uint8Array>): Promise<void> {
    this.#check();
    const names = Array.isArray(files) ? files.map((f) => f.name) : Object.keys(files);
    const blobs = Array.isArray(files) ? files : names.map((n) => (files as Record<string, Uint8Array>)[n]);
    await this.#conn.request<void>({ op: "loadAdapter", names, blobs });
  }

  /**
   * Measures training speed on this device: LoRA steps on fixed pseudo-random tokens (the
   * workload of the native `webpeft bench train`) on a copy of the model, plus an f32 matmul
   * GFLOPS probe. The model and its adapter are left as they were. Not while training.
   */
  async benchmark(opts: BenchmarkOptions = {}): Promise<BenchmarkResult> {
    this.#check();
    const task: Task = opts.task ?? (this.info.model_type === "bert" ? "seq-cls" : "causal-lm");
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

  /** Frees the model and stops the worker. Later calls fail with kind "input". */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#conn.kill(new WebPeftError("input", "this Tuner was disposed", "tuner"));
    this.#conn.terminate();
  }
}

export type { ErrorPayload };
