// Public types of the webpeft package and the message protocol between the
// main thread (index.ts) and the module worker (worker.ts). The types of the core's
// options, events, model info, plans, data validation and error kinds are generated from
// the Rust definitions into core-types.ts (crate/src/api.rs); this file composes them with
// what only the package has (sources, callbacks, signals, worker messages).
import type { Snake } from "./casing.js";
import type { AdapterChoice, CoreErrorKind, Quantize, CoreEvent, DpOptions as DpSpec, EvalMetrics, Method, Task, TrainSpec, TrainStart, ValidateSpec } from "./core-types.js";

export type {
  Accountant,
  AdapterChoice,
  Classification,
  CoreErrorKind,
  DataProblem,
  DataValidation,
  DeviceLimits,
  EvalMetrics,
  LabelCount,
  MemoryPlan,
  Method,
  ModelInfo,
  Optimizer,
  PlanError,
  PlanTensor,
  Quantize,
  Schedule,
  StepReport,
  Task,
  TokenCounts,
  TrainSpec,
  TrainStart,
  ValidateSpec,
  WeightsPlan,
  TrainingPlan,
} from "./core-types.js";

/**
 * What went wrong, broadly. The core's kinds (`CoreErrorKind`: format, unsupported,
 * input, device, io), and two of the package's: "aborted" is an `AbortSignal` that
 * fired; "crash" is a wasm panic, a dead worker or a bug.
 */
export type ErrorKind = CoreErrorKind | "aborted" | "crash";

export type Backend = "webgpu" | "cpu";
export type BackendChoice = "auto" | Backend;

/**
 * A model: local files, URLs, or a Hugging Face Hub repository (`revision`: a
 * branch, tag or commit, default "main"; `file`: one file to load, e.g. a `.gguf`).
 */
export type ModelSource =
  | { files: File[] | Record<string, Uint8Array | Blob> }
  | { urls: (string | URL)[] }
  | { hub: string; revision?: string; file?: string };

/** Where the Hub is and who asks: for `{ hub }` sources and `Tuner.listFiles`. */
export interface HubOptions {
  /** A Hugging Face access token, sent as `Authorization: Bearer` (gated and private repositories). */
  token?: string;
  /** The Hub's URL (default "https://huggingface.co"): a mirror or a self-hosted hub with the same API. */
  endpoint?: string | URL;
}

/** One file of a Hub repository. */
export interface HubFile {
  path: string;
  /** Bytes (the real file's size for LFS files), when the Hub says. */
  size?: number;
}

/** A repository at a revision: the commit it resolved to and its files. */
export interface HubRepoInfo {
  repo: string;
  revision: string;
  /** The 40-hex commit `revision` pointed to when asked. */
  commit: string;
  files: HubFile[];
}

export interface ListFilesOptions extends HubOptions {
  /** Branch, tag or commit (default "main"). */
  revision?: string;
  /** Only files whose name ends with this (case-insensitive), e.g. ".gguf". */
  suffix?: string;
  signal?: AbortSignal;
}

export interface LoadProgress {
  file: string;
  loaded: number;
  total?: number;
}

export interface LoadOptions extends HubOptions {
  /**
   * Stops the load: downloads are cancelled and the promise rejects with a
   * `WebPeftError` of kind "aborted".
   */
  signal?: AbortSignal;
  /** "auto" (default): WebGPU on a hardware adapter, else the CPU (wasm) backend. */
  backend?: BackendChoice;
  onProgress?: (p: LoadProgress) => void;
  /** Where the worker script is (default: `worker.js` next to this module). */
  workerUrl?: string | URL;
  /**
   * Where the wasm core is (default: `webpeft_bg.wasm` next to the worker). Bundlers
   * that do not copy it on their own take it as an asset URL, e.g. with Vite:
   * `import wasmUrl from "webpeft/webpeft_bg.wasm?url"`.
   */
  wasmUrl?: string | URL;
  /** Largest total model size in bytes to accept (default: 2 GiB, what wasm32 memory can hold next to the weights). */
  maxBytes?: number;
  /**
   * Largest single tensor in bytes (as f32). Default on WebGPU: the adapter's
   * `maxStorageBufferBindingSize`, since a larger tensor cannot be bound to a shader; no
   * limit on the CPU backend. A model with a larger weight is refused before anything is
   * uploaded, and a training run whose micro-batch activations (token logits, attention
   * scores, MLP) would be larger is refused before it starts.
   */
  maxTensorBytes?: number;
  /**
   * How the frozen base's weights are held. "none" (default): as stored — a GGUF's block
   * formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) stay quantized in memory and are
   * dequantised on the fly, float weights are f32. "q8_0" / "q4_0": float matrices are
   * quantized on load (QLoRA's frozen base). "f32": every weight widened to f32.
   */
  quantize?: Quantize;
  /**
   * Threads for the CPU backend (default: `navigator.hardwareConcurrency`). More than one
   * needs a cross-origin isolated page (COOP `same-origin` and COEP `require-corp`
   * headers); elsewhere the CPU backend runs on one thread and `device.notice` says why.
   */
  threads?: number;
  /**
   * Where the threads build's glue is (default: `threads/webpeft.js` next to the worker;
   * it loads `webpeft_bg.wasm` and its `snippets/` next to itself). For bundlers that do
   * not copy `dist/threads/`: serve that folder and give its `webpeft.js` URL.
   */
  threadsUrl?: string | URL;
}

/** The backend in use and what the device offers. */
export interface DeviceInfo {
  backend: Backend;
  adapter?: string;
  vendor?: string;
  architecture?: string;
  f16: boolean;
  subgroups: boolean;
  maxBufferSize?: number;
  maxStorageBufferBindingSize?: number;
  /** CPU backend: the threads its kernels run on. */
  threads?: number;
  /** Why the backend differs from what was asked for or what is best (e.g. "WebGPU unavailable; using the CPU backend"). */
  notice?: string;
  [key: string]: unknown;
}

/**
 * The `dp` train option: differentially private training (DP-SGD as Opacus does it).
 * Every field has a default (`delta` 1e-5, `maxGradNorm` 1).
 */
export type DpOptions = Partial<DpSpec>;

/**
 * The options of `Tuner.train`: the core's training job (`TrainSpec`, generated from
 * the Rust definition; every field but `task` and `method` has a default), plus what
 * only the package reads (`dataFormat`, `checkpointEvery`).
 */
export interface TrainOptions extends Partial<Omit<TrainSpec, "dp" | "adapter">> {
  task: Task;
  method: Method;
  /**
   * When the model already has an adapter (trained by an earlier run, or loaded):
   * - `"new"`: train a fresh adapter from these options on the base model; the attached
   *   adapter is dropped once the run has started (a failed start keeps it);
   * - `"continue"`: train the attached adapter further, with its own method and settings;
   *   options that disagree with it are listed in the start event's `warnings`.
   *
   * Default: `"continue"` when the adapter these options would create has the attached
   * adapter's PEFT config (every `adapter_config.json` field except those that only name or
   * initialise it: method and task, `r`, `alpha`, `targets`, `dropout`, `rslora`, DoRA, bias,
   * `virtualTokens`, ...) and, for `seq-cls`, the same labels; `"new"` otherwise. Without an
   * adapter a new one is always created (`"continue"` is an error). `resetAdapter()` drops the
   * adapter explicitly. The start event and the summary say which was done.
   */
  adapter?: AdapterChoice;
  /**
   * Differentially private training (DP-SGD as Opacus does it): per-example
   * gradients clipped to `maxGradNorm`, Gaussian noise, Poisson-sampled
   * batches of expected size `batch`, and Opacus's PRV accountant (or its RDP
   * one: `accountant: "rdp"`). Not with `gradAccum` or `clip`.
   */
  dp?: DpOptions;
  /** The data's format when it is given as a string or Blob without a file name (default: guessed). */
  dataFormat?: "jsonl" | "csv" | "txt";
  /**
   * Emit a `checkpoint` event (the adapter, the optimiser state and the trainer
   * state) after every N-th step (default 0: none). For `train`'s `resumeFrom`.
   */
  checkpointEvery?: number;
}

/**
 * An exact checkpoint of a running job: the adapter's PEFT files (config,
 * weights, the webpeft.json sidecar) plus the optimiser's moments and the
 * trainer state (step, data order). Pass it back as `resumeFrom`.
 */
export interface CheckpointFiles {
  config: Uint8Array;
  weights: Uint8Array;
  sidecar: Uint8Array;
  optimizer: Uint8Array;
  state: Uint8Array;
}

/** The fourth argument of `Tuner.train`. */
export interface TrainResume {
  /**
   * Continue the run a `checkpoint` event saved. Load the same model afresh
   * and give the same data, eval data and options as the original run: the
   * resumed run continues exactly (same learning-rate schedule, batches and
   * losses) from the step after the checkpoint.
   */
  resumeFrom?: CheckpointFiles;
  /**
   * Cancels the run when it fires, as `run.cancel()` does (`done` resolves with reason "cancelled";
   * before the run has started, while its data is read, nothing starts and `done` rejects with kind "aborted").
   */
  signal?: AbortSignal;
}

/** The run has started: its size, its warnings and which adapter it trains. */
export type StartEvent = { event: "start" } & TrainStart;
/** One optimiser step (`StepReport`). */
export type StepEvent = Extract<CoreEvent, { event: "step" }>;
/** An evaluation, every `evalEvery` steps and at the end when there is eval data. */
export type EvalEvent = Extract<CoreEvent, { event: "eval" }>;
/** The end of the run: `reason` is the core's (`completed`, `early_stopping`) or `cancelled`. */
export type DoneEvent = Extract<CoreEvent, { event: "done" }>;
export interface PauseEvent {
  event: "paused" | "resumed";
  step: number;
}
export interface CheckpointEvent {
  event: "checkpoint";
  /** The last step the checkpoint includes. */
  step: number;
  files: CheckpointFiles;
}
export type TrainEvent = StartEvent | StepEvent | EvalEvent | DoneEvent | PauseEvent | CheckpointEvent;

/** What `run.done` resolves to: the start event's facts and how the run ended. */
export interface TrainSummary extends TrainStart {
  /** Why training stopped: the core's reason ("completed", "early_stopping", "nan", ...) or "cancelled". */
  reason: string;
  /** Steps done. */
  steps: number;
  /** Loss of the last step, if any. */
  loss?: number;
  /** The last evaluation, if any. */
  eval?: EvalMetrics;
  /** Seconds from the start to the end of the run. */
  elapsedS: number;
}

export interface TrainRun {
  /**
   * Every event of the run, from the start (each iteration replays what came before). If the
   * run fails, the iteration throws the run's error (the one `done` rejects with) after the
   * events that came before it, so `for await` never mistakes a failed run for a finished one.
   */
  events: AsyncIterable<TrainEvent>;
  /** Pauses between two steps; resolves once the worker has paused. */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /**
   * Stops after the current step; the adapter trained so far stays on the model. Before the
   * run has started (its data still being read) nothing starts: `done` rejects with kind
   * "aborted" and the model and its adapter are as they were.
   */
  cancel(): Promise<void>;
  done: Promise<TrainSummary>;
}

export interface GenerateOptions {
  /** Use the trained/loaded adapter (default true). */
  adapter?: boolean;
  maxNewTokens?: number;
  /** 0 = greedy (default). */
  temperature?: number;
  topP?: number;
  seed?: number;
  /** Wrap the prompt in the model's chat template. */
  chat?: boolean;
  onToken?: (text: string) => void;
  /** Stops generation before the next token; the promise rejects with kind "aborted". */
  signal?: AbortSignal;
}

/** One turn of a chat. */
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** Options of `Tuner.chat`: those of `generate`, less `chat` (always on). */
export type ChatOptions = Omit<GenerateOptions, "chat">;

/**
 * What `Tuner.chat` returns: a promise of the whole reply that is also an async
 * iterable of its pieces of text, as they are generated.
 */
export interface ChatReply extends Promise<string>, AsyncIterable<string> {}

export interface TokenizeOptions {
  /** Add the tokenizer's special tokens, such as BOS (default true, as the native `webpeft tokenize`). */
  specialTokens?: boolean;
}

export interface ClassifyOptions {
  /** Use the trained/loaded adapter (default true). */
  adapter?: boolean;
  /** Stops before the next text; the promise rejects with kind "aborted". */
  signal?: AbortSignal;
}

/** What `Tuner.benchmark` measures; the defaults are `webpeft bench train`'s configs. */
export interface BenchmarkOptions {
  /** Default: "seq-cls" for encoders (BERT family), "causal-lm" for decoders. */
  task?: Task;
  /** Default 16 for seq-cls, 4 for causal-lm. */
  batch?: number;
  /** Tokens per row. Default 64 for seq-cls, 128 for causal-lm. */
  seq?: number;
  /** Timed steps after one warm-up step (default 3). */
  steps?: number;
  /** Side of the square f32 matmul of the GFLOPS probe (default 1024; 0 skips it). */
  matmulSize?: number;
}

/**
 * Speed of LoRA training steps (r 8, PEFT's default targets, AdamW) on fixed
 * pseudo-random token rows, on a copy of the model (which is left as it was).
 */
export interface BenchmarkResult {
  backend: Backend;
  task: Task;
  batch: number;
  seq: number;
  /** The first step, with kernel compilation and allocation. */
  warmupMs: number;
  /** Each timed step. */
  stepMs: number[];
  /** Mean of `stepMs`. */
  msPerStep: number;
  tokensPerSecond: number;
  /** The matmul probe (absent when `matmulSize` is 0). */
  matmul?: { n: number; msPerMatmul: number; gflops: number };
}

/** Data for training or evaluation. */
export type DataInput = File | Blob | string | object[];

// ---- validateData ------------------------------------------------------------

/**
 * Options of `validateData`: what the data is checked for (`ValidateSpec`, generated from
 * the core's), and how it is read.
 */
/** `tuner.suggestOptions`: train options picked for the model and the data, and why. */
export interface TrainSuggestion {
  /** Options for `tuner.train` (only those the suggestion sets). */
  options: TrainOptions;
  /** What was chosen and why, in one sentence a page can show. */
  why: string;
}

export interface ValidateDataOptions extends ValidateSpec {
  /** The format of a string or Blob without a file name, as in `TrainOptions.dataFormat`. */
  dataFormat?: "jsonl" | "csv" | "txt";
  /** `Tuner.validateData` (no model) only: where the worker and the wasm core are, as in `LoadOptions`. */
  workerUrl?: string | URL;
  wasmUrl?: string | URL;
}

// ---- Worker protocol -------------------------------------------------------

export interface ErrorPayload {
  kind: ErrorKind;
  message: string;
  source?: string;
  line?: number;
}

/** A data set, made transferable: a name (its extension tells the format) and its bytes or a Blob. */
export interface DataPayload {
  name: string;
  blob?: Blob;
  bytes?: Uint8Array;
}

export type ModelPayload =
  | { kind: "files"; names: string[]; blobs: (Blob | Uint8Array)[] }
  | { kind: "urls"; urls: string[] }
  | { kind: "hub"; repo: string; revision: string; file?: string; endpoint: string; token?: string };

/** Options of `Tuner.plan`: the device the plan is checked against. */
export interface PlanOptions {
  /** "cpu" (default): device memory is wasm memory, so weights and training state count against `maxBytes`; "webgpu": they live on the GPU. */
  backend?: Backend;
  /** Memory limit in bytes (default: wasm32's 4 GiB). */
  maxBytes?: number;
  /** Largest single buffer in bytes (WebGPU's `maxStorageBufferBindingSize`); none by default. */
  maxTensorBytes?: number;
  /** How the weights would be held, as in `LoadOptions.quantize`. */
  quantize?: Quantize;
  /** For Hub sources: an access token and the Hub's URL, as in `LoadOptions`. */
  token?: string;
  endpoint?: string;
  workerUrl?: string | URL;
  wasmUrl?: string | URL;
}

export type Request =
  | { op: "plan"; model: ModelPayload; options?: Record<string, unknown>; backend: Backend; maxBytes?: number; maxTensorBytes?: number; quantize?: Quantize; wasmUrl?: string }
  | { op: "load"; backend: Backend; fallbackToCpu: boolean; notice?: string; model: ModelPayload; maxBytes?: number; maxTensorBytes?: number; quantize?: Quantize; threads?: number; threadsUrl?: string; wasmUrl?: string; crashChannel?: string }
  /** With a model, its tokenizer too; without one (a worker of its own) the parser only. */
  | { op: "validateData"; data: DataPayload; options: Snake<ValidateSpec>; wasmUrl?: string }
  /** Test hook (threads build): a panic on a pool worker (see crate/src/web.rs). */
  | { op: "panicOnThreadPool" }
  | { op: "train"; data: DataPayload; evalData?: DataPayload; options: Record<string, unknown>; resumeFrom?: CheckpointFiles }
  | { op: "pause" }
  | { op: "resume" }
  | { op: "cancel" }
  | { op: "generate"; prompt: string; chat: boolean; maxNewTokens: number; temperature: number; topP: number; seed: number; adapter: boolean }
  | { op: "chat"; messages: ChatMessage[]; maxNewTokens: number; temperature: number; topP: number; seed: number; adapter: boolean }
  | { op: "renderChat"; messages: ChatMessage[]; addGenerationPrompt: boolean }
  | { op: "tokenize"; text: string; specialTokens: boolean }
  | { op: "classify"; texts: string[]; adapter: boolean }
  | { op: "forward"; ids: number[] }
  | { op: "suggest"; task?: Task; rows: number; heldOut?: number }
  | { op: "exportFiles" }
  | { op: "exportZip" }
  | { op: "gpuJob" }
  | { op: "exportGguf" }
  | { op: "loadAdapter"; names: string[]; blobs: (Blob | Uint8Array)[] }
  | { op: "resetAdapter" }
  | { op: "benchmark"; task: Task; batch?: number; seq?: number; steps: number; matmulSize: number }
  | { op: "dispose" }
  /** Aborts request `target` (generate, classify, load); answered by that request's own error. */
  | { op: "abort"; target: number };

export type RequestMessage = Request & { id: number };

export type ResponseMessage =
  | { id: number; type: "result"; result: unknown }
  | { id: number; type: "error"; error: ErrorPayload }
  | { id: number; type: "event"; event: TrainEvent }
  | { id: number; type: "token"; text: string }
  | { id: number; type: "progress"; progress: LoadProgress }
  | { id: -1; type: "crash"; error: ErrorPayload };
