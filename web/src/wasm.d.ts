// The wasm-bindgen API of the Rust core (crate/src/web.rs, built by
// scripts/build-web.sh into web/pkg/). The worker imports it as "webpeft-wasm";
// web/build.mjs points that name at web/pkg/webpeft.js. Errors thrown by these
// functions are JS Errors whose message is "source: message" and which carry
// a `kind` (format | unsupported | input | device | io). Results carry the core's
// snake_case keys (`Snake<T>` of the generated camelCase type T; the worker renames them).
declare module "webpeft-wasm" {
  type Snake<T> = import("./casing.js").Snake<T>;
  type ModelInfo = import("./core-types.js").ModelInfo;
  type TrainStart = import("./core-types.js").TrainStart;
  type CoreEvent = import("./core-types.js").CoreEvent;
  type MemoryPlan = import("./core-types.js").MemoryPlan;
  type Quantize = import("./core-types.js").Quantize;
  type Classification = import("./core-types.js").Classification;
  type ValidateSpec = import("./core-types.js").ValidateSpec;
  type DataValidation = import("./core-types.js").DataValidation;
  export interface WasmDeviceInfo {
    backend: "webgpu" | "cpu";
    adapter?: string;
    vendor?: string;
    architecture?: string;
    f16?: boolean;
    subgroups?: boolean;
    maxBufferSize?: number;
    maxStorageBufferBindingSize?: number;
  }
  export interface AdapterFiles {
    config: Uint8Array;
    weights: Uint8Array;
    sidecar: Uint8Array;
  }
  export default function init(options?: { module_or_path?: RequestInfo | URL | BufferSource | WebAssembly.Module }): Promise<unknown>;
  export function initDevice(backend: "webgpu" | "cpu"): Promise<WasmDeviceInfo>;
  /** Threads of the CPU backend: 1, or the rayon pool's size in the threads build. */
  export function cpuThreads(): number;
  /** Milliseconds per n x n f32 matmul on the initialised device (after a warm-up). */
  export function benchMatmul(n: number, reps: number): Promise<number>;
  /** The memory plan from the files' first bytes: `{need}` while a header is incomplete, else the plan with `fits` (crate/src/web.rs). */
  export function planModel(names: string[], heads: Uint8Array[], lens: number[], options: object | undefined, limits: object, quantize?: Quantize): Snake<MemoryPlan> | { need: { name: string; bytes: number }[] };
  /** Checks a dataset file without a model (crate/src/train/data.rs `validate`). */
  export function validateData(name: string, bytes: Uint8Array, options: Snake<ValidateSpec> | undefined): Snake<DataValidation>;
  export class Session {
    private constructor();
    static load(names: string[], files: Uint8Array[], maxTensorBytes?: number, quantize?: Quantize): Session;
    info(): Snake<ModelInfo>;
    /** As validateData, with this model's tokenizer (token counts, chat template, truncation). */
    validateData(name: string, bytes: Uint8Array, options: Snake<ValidateSpec> | undefined): Snake<DataValidation>;
    startTraining(
      trainName: string,
      trainBytes: Uint8Array,
      evalName: string | undefined,
      evalBytes: Uint8Array | undefined,
      options: object,
    ): Snake<TrainStart>;
    trainStep(): Promise<Snake<CoreEvent>[]>;
    isTraining(): boolean;
    finishTraining(): void;
    exportAdapter(): Promise<AdapterFiles>;
    /** The LoRA adapter as llama.cpp's GGUF LoRA. */
    exportAdapterGguf(): Promise<Uint8Array>;
    loadAdapter(config: Uint8Array, weights: Uint8Array, sidecar?: Uint8Array): void;
    /** Drops the adapter: the base model as loaded. */
    resetAdapter(): void;
    setAdapterEnabled(on: boolean): void;
    generate(
      prompt: string,
      chat: boolean,
      maxNewTokens: number,
      temperature: number,
      topP: number,
      seed: number,
      /** Called once per token with the new text ("" when none); answering false (or a Promise of false) stops. */
      onToken: (text: string) => boolean | Promise<boolean> | void,
    ): Promise<string>;
    /** Like generate, after a chat: `messages` is a JSON array of {role, content}, rendered with the chat template and its generation prompt. */
    generateChat(
      messages: string,
      maxNewTokens: number,
      temperature: number,
      topP: number,
      seed: number,
      onToken: (text: string) => boolean | Promise<boolean> | void,
    ): Promise<string>;
    /** The chat template's rendering of `messages` (a JSON array of {role, content}). */
    renderChat(messages: string, addGenerationPrompt: boolean): string;
    /** Token ids of `text` (with the special tokens, such as BOS, when `specialTokens`). */
    tokenize(text: string, specialTokens: boolean): Uint32Array;
    /** One-button train options for `rows` rows (`train::suggest`): snake_case options, unset ones null, and why. */
    suggestOptions(task: Task | undefined, rows: number, heldOut: number | undefined): { options: Record<string, unknown>; why: string };
    classify(texts: string[]): Promise<Classification[]>;
    forward(ids: Uint32Array): Promise<Float32Array>;
    checkpoint(): Promise<AdapterFiles & { optimizer: Uint8Array; state: Uint8Array }>;
    restoreCheckpoint(optimizer: Uint8Array, state: Uint8Array): void;
    /** The running job as a GPU job's files by path (`train.py`, `job.json`, `checkpoint/`, `data/`). */
    gpuJob(trainName: string, trainBytes: Uint8Array, evalName?: string, evalBytes?: Uint8Array): Promise<Record<string, Uint8Array>>;
    /** Milliseconds per LoRA training step on a copy of the model (`ms`; the first is the warm-up), and the batch shape used. */
    benchTrain(task: string, batch: number | undefined, seq: number | undefined, steps: number): Promise<{ batch: number; seq: number; ms: Float64Array }>;
    free(): void;
  }
}
