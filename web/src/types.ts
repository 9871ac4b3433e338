// Public types of the webpeft package and the message protocol between the
// main thread (index.ts) and the module worker (worker.ts).

/**
 * What went wrong, broadly. The first five also come from the core; "aborted" is an
 * `AbortSignal` that fired; "crash" is a wasm panic, a dead worker or a bug.
 */
export type ErrorKind = "format" | "unsupported" | "input" | "device" | "io" | "aborted" | "crash";

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

/** The model, as the core describes it (snake_case, as the wasm returns it). */
export interface ModelInfo {
  architecture: string;
  model_type: string;
  task: string;
  num_parameters: number;
  vocab_size: number;
  hidden_size: number;
  num_layers: number;
  context_length: number;
  num_labels?: number | null;
  has_chat_template: boolean;
  dtypes: string[];
  format: string;
  estimated_bytes?: number;
  [key: string]: unknown;
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

export type Task = "causal-lm" | "seq-cls";
export type Method = "lora" | "dora" | "bitfit" | "ia3" | "prompt" | "prefix";

/** What `train` does with an adapter already on the model (see `TrainOptions.adapter`). */
export type AdapterChoice = "new" | "continue";

export interface TrainOptions {
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
  /** LoRA rank. */
  r?: number;
  alpha?: number;
  dropout?: number;
  targets?: string[];
  rslora?: boolean;
  /** LoRA init "gaussian" instead of kaiming-uniform. */
  gaussianInit?: boolean;
  /** Prompt / prefix tuning length. */
  virtualTokens?: number;
  /** Prompt tuning: initialise from this text's token embeddings. */
  initText?: string;
  epochs?: number;
  /** Optimiser steps (overrides epochs). */
  steps?: number;
  lr?: number;
  batch?: number;
  seqLen?: number;
  warmup?: number;
  schedule?: "constant" | "linear" | "cosine";
  seed?: number;
  shuffle?: boolean;
  gradAccum?: number;
  clip?: number;
  evalEvery?: number;
  evalSplit?: number;
  patience?: number;
  optimizer?: "adamw" | "sgd";
  weightDecay?: number;
  /** SGD momentum. */
  momentum?: number;
  /** Written to the adapter's base_model_name_or_path (default: the Hub repository when loaded from the Hub). */
  baseModel?: string;
  /** The data's format when it is given as a string or Blob without a file name (default: guessed). */
  dataFormat?: "jsonl" | "csv" | "txt";
  /**
   * Emit a `checkpoint` event (the adapter, the optimiser state and the trainer
   * state) after every N-th step (default 0: none). For `train`'s `resumeFrom`.
   */
  checkpointEvery?: number;
  /**
   * Differentially private training (DP-SGD as Opacus does it): per-example
   * gradients clipped to `maxGradNorm`, Gaussian noise, Poisson-sampled
   * batches of expected size `batch`, and Opacus's RDP accountant. Not with
   * `gradAccum` or `clip`.
   */
  dp?: DpOptions;
}

/** The `dp` train option. */
export interface DpOptions {
  /** The epsilon to reach at the end of the run (the noise multiplier is derived from it, as Opacus's `get_noise_multiplier` does). */
  targetEpsilon?: number;
  /** Default 1e-5; use less than 1 / (number of training examples). */
  delta?: number;
  /** Per-example clipping norm over all trainable tensors (default 1). */
  maxGradNorm?: number;
  /** Overrides `targetEpsilon`. */
  noiseMultiplier?: number;
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

export interface StartEvent {
  event: "start";
  trainable_parameters: number;
  total_parameters: number;
  total_steps: number;
  train_examples: number;
  eval_examples: number;
  warnings: string[];
  labels?: string[];
  /** Whether the run trains a new adapter or continues the attached one. */
  adapter: AdapterChoice;
}
export interface StepEvent {
  event: "step";
  step: number;
  total_steps: number;
  epoch: number;
  loss: number;
  lr: number;
  grad_norm: number;
  tokens_per_s: number;
  elapsed_s: number;
  eta_s: number;
  /** DP runs: epsilon spent so far (at the run's delta). */
  epsilon?: number;
  /** DP runs: this step's Poisson batch size; when 0, `loss` and `grad_norm` (the mean per-example norm before clipping) are NaN. */
  batch_size?: number;
}
export interface EvalEvent {
  event: "eval";
  step: number;
  metrics: { loss: number; perplexity?: number; accuracy?: number; macro_f1?: number; examples: number };
}
export interface DoneEvent {
  event: "done";
  step: number;
  reason: string;
}
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

export interface TrainSummary {
  /** Why training stopped: the core's reason ("completed", "early_stopping", "nan", ...) or "cancelled". */
  reason: string;
  steps: number;
  total_steps: number;
  /** Loss of the last step, if any. */
  loss?: number;
  /** The last evaluation, if any. */
  eval?: EvalEvent["metrics"];
  elapsed_s: number;
  trainable_parameters: number;
  total_parameters: number;
  train_examples: number;
  eval_examples: number;
  warnings: string[];
  labels?: string[];
  /** Whether the run trained a new adapter or continued the attached one. */
  adapter: AdapterChoice;
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

export interface Classification {
  label: string;
  probs: Record<string, number>;
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

/** Options of `validateData`: what the data is checked for. */
export interface ValidateDataOptions {
  /** The task to train (default: "seq-cls" for rows with labels, else "causal-lm"). */
  task?: Task;
  /** The training sequence length: truncation is counted against it (default 128, training's default). */
  seqLen?: number;
  /** The format of a string or Blob without a file name, as in `TrainOptions.dataFormat`. */
  dataFormat?: "jsonl" | "csv" | "txt";
  /** `Tuner.validateData` (no model) only: where the worker and the wasm core are, as in `LoadOptions`. */
  workerUrl?: string | URL;
  wasmUrl?: string | URL;
}

/** A problem in a dataset, as training would report it. */
export interface DataProblem {
  /** "input" (a row) or "format" (the chat template cannot render it). */
  kind: "input" | "format";
  /** The file (or tokenizer, or chat template) it is about. */
  source: string;
  /** The 1-based line of the row in the file; null when it is about the whole file. */
  line: number | null;
  /** The core's whole message, "file: line N: what". */
  message: string;
}

/** What `validateData` found: the counts training would see, and each problem with its line. */
export interface DataValidation {
  /** The file name (for a string, Blob or array: "data.jsonl", "data.csv" or "data.txt"). */
  source: string;
  /** The detected format; null when the file could not be read at all (not UTF-8, a JSON array, ...). */
  format: "jsonl-text" | "jsonl-prompt-completion" | "jsonl-messages" | "jsonl-text-label" | "csv-text-label" | "txt" | null;
  /** The task checked for (null when no row parsed). */
  task: Task | null;
  /** Rows that parsed (a `.txt` file is one row: the whole text). */
  rows: number;
  /** Classification data: each label (in the order of the classes training would make) and its rows. */
  labels: { label: string; count: number }[] | null;
  /** With a model's tokenizer (`tuner.validateData`), when the rows that parsed encode: token counts before truncation. */
  tokens: { total: number; longest: number; seqLen: number; examples: number } | null;
  /** Training's notes on the data: rows truncated at `seqLen`, or skipped. */
  warnings: string[];
  /** Every problem (the first 100), in file order, then any about the data as a whole. */
  problems: DataProblem[];
  /** No problems: training would accept this data. */
  ok: boolean;
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
  /** For Hub sources: an access token and the Hub's URL, as in `LoadOptions`. */
  token?: string;
  endpoint?: string;
  workerUrl?: string | URL;
  wasmUrl?: string | URL;
}

/** One tensor or buffer of a plan. */
export interface PlanTensor {
  name: string;
  shape: number[];
  bytes: number;
}

/**
 * What loading (and training) a model will take, from its files' headers alone
 * (snake_case, as the core returns it; `crate/src/plan.rs`). Today every weight is
 * held as f32 (`weights.device_dtype`) whatever the files store (`weights.stored_dtypes`).
 */
export interface MemoryPlan {
  format: string;
  model_type: string;
  vocab_size: number;
  hidden_size: number;
  num_layers: number;
  file_bytes: number;
  weights: {
    parameters: number;
    device_parameters: number;
    stored_dtypes: string[];
    stored_bytes: number;
    device_dtype: string;
    device_bytes: number;
    largest: PlanTensor;
  };
  /** Host (wasm) memory while loading: the files read whole, the weights widened to f32. */
  host_load_bytes: number;
  training: null | {
    method: string;
    task: string;
    batch: number;
    seq_len: number;
    positions: number;
    trainable_parameters: number;
    adapter_bytes: number;
    activations_bytes: number;
    logits_bytes: number;
    largest_activation: PlanTensor;
  };
  device_bytes: number;
  host_peak_bytes: number;
  limits: { memory_bytes?: number; memory_name: string; max_buffer_bytes?: number; device_is_host: boolean };
  fits: boolean;
  /** Why it does not fit (kind "device"): the largest item and what would fit. */
  error?: ErrorPayload;
}

export type Request =
  | { op: "plan"; model: ModelPayload; options?: Record<string, unknown>; backend: Backend; maxBytes?: number; maxTensorBytes?: number; wasmUrl?: string }
  | { op: "load"; backend: Backend; fallbackToCpu: boolean; notice?: string; model: ModelPayload; maxBytes?: number; maxTensorBytes?: number; threads?: number; threadsUrl?: string; wasmUrl?: string; crashChannel?: string }
  /** With a model, its tokenizer too; without one (a worker of its own) the parser only. */
  | { op: "validateData"; data: DataPayload; options: { task?: Task; seq_len?: number }; wasmUrl?: string }
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
  | { op: "exportFiles" }
  | { op: "exportZip" }
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
