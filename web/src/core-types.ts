// GENERATED from the Rust types by ts-rs (crate/src/api.rs). Do not edit: change the Rust
// definitions, then `WEBPEFT_WRITE_TYPES=1 cargo test --release --features cli -p webpeft --lib core_types`.
// `cargo test` fails while this file differs from what the Rust types give.

/**
 * Broad error categories, stable for the JS bindings.
 */
export type CoreErrorKind = "format" | "unsupported" | "input" | "device" | "io";

/**
 * What the examples are encoded for. Written `causal-lm` or `seq-cls`
 * (CLI flags, JS options, `webpeft.json`).
 */
export type Task = "causal-lm" | "seq-cls";

/**
 * How the frozen base's weights are held on the device.
 */
export type Quantize = "none" | "f32" | "q8_0" | "q4_0";

/**
 * The methods webpeft can create, written `lora`, `dora`, `bitfit`, `ia3`,
 * `prompt` or `prefix` (CLI flags and JS options).
 */
export type Method = "lora" | "dora" | "bitfit" | "ia3" | "prompt" | "prefix";

/**
 * Which adapter a run trains when the model already carries one.
 */
export type AdapterChoice = "new" | "continue";

/**
 * How the learning rate moves over training (HF `get_*_schedule_with_warmup`),
 * written `constant`, `linear` or `cosine`.
 */
export type Schedule = "constant" | "linear" | "cosine";

/**
 * The optimiser a job asks for (`adamw` or `sgd`); its settings are the
 * spec's `weight_decay` and `momentum`.
 */
export type Optimizer = "adamw" | "sgd";

/**
 * The privacy accountant of a DP run, named as Opacus's `mechanism()` names it.
 */
export type Accountant = "prv" | "rdp";

/**
 * The `dp` option of a training job (its fields cased like the rest of `TrainSpec`).
 * The CLI takes these flags after `--dp`.
 */
export type DpOptions = { 
/**
 * The epsilon to reach at the end of the run; the noise multiplier is
 * found with Opacus's `get_noise_multiplier` and `accountant`. Ignored
 * when `noise_multiplier` is given.
 */
targetEpsilon?: number, delta: number, 
/**
 * Per-example clipping norm `C`, over all trainable tensors together.
 */
maxGradNorm: number, 
/**
 * Noise std relative to `max_grad_norm`; overrides `target_epsilon`.
 */
noiseMultiplier?: number, 
/**
 * Seeds the noise and the Poisson sampling. For tests only: anyone who
 * knows the seed can subtract the noise, which voids the guarantee. Unset,
 * both come from the operating system's entropy.
 */
seed?: number, 
/**
 * The accountant that calibrates the noise and reports epsilon: `prv`
 * (Opacus's `PrivacyEngine` default) or `rdp`.
 */
accountant: Accountant, };

/**
 * A training job: the CLI's flags (snake_case here and in JSON, camelCase in
 * the npm package's options). An unset field takes the method's PEFT default.
 * The choice fields are enums with the CLI's spellings (`causal-lm`, `ia3`,
 * `adamw`, ...), so the CLI's flags and the browser's options object share
 * one definition; an unknown value is refused when the spec is read, before
 * a model is touched.
 */
export type TrainSpec = { 
/**
 * `causal-lm` (next-token prediction) or `seq-cls` (classification).
 */
task: Task, 
/**
 * The PEFT method.
 */
method: Method, 
/**
 * With an adapter already on the model: `new` or `continue`. Unset, it
 * is `continue` when the adapter these options would create has the
 * attached adapter's settings (see `prepare`), else `new`.
 */
adapter?: AdapterChoice, 
/**
 * LoRA rank (PEFT's default 8).
 */
r?: number, 
/**
 * LoRA alpha (PEFT's default 8).
 */
alpha?: number, 
/**
 * LoRA dropout, applied in training steps only.
 */
dropout: number, 
/**
 * Module names, or one `re:<regex>` (the CLI's `--targets` takes them comma-separated).
 */
targets?: Array<string>, 
/**
 * rsLoRA: scale by alpha / sqrt(r) instead of alpha / r.
 */
rslora: boolean, 
/**
 * LoRA init `gaussian` instead of kaiming-uniform.
 */
gaussianInit: boolean, 
/**
 * Prompt / prefix tuning length (default 8).
 */
virtualTokens?: number, 
/**
 * Prompt tuning: initialise from this text's token embeddings.
 */
initText?: string, epochs: number, 
/**
 * Optimiser steps (overrides epochs).
 */
steps?: number, lr: number, batch: number, seqLen: number, 
/**
 * Warm-up steps (linear from 0).
 */
warmup: number, schedule: Schedule, optimizer: Optimizer, weightDecay: number, 
/**
 * SGD momentum.
 */
momentum: number, seed: number, 
/**
 * Shuffle the training rows each epoch (the CLI's `--no-shuffle` turns it off).
 */
shuffle: boolean, 
/**
 * Micro-batches per optimiser step.
 */
gradAccum: number, 
/**
 * Clip the global gradient norm.
 */
clip?: number, 
/**
 * Evaluate every N steps (and always at the end).
 */
evalEvery?: number, 
/**
 * Share of the training data held out for eval when no eval file is given.
 */
evalSplit: number, 
/**
 * Early stopping: evaluations without improvement of the eval loss.
 */
patience?: number, 
/**
 * Written to `base_model_name_or_path` (the CLI writes the model's path).
 */
baseModel: string, 
/**
 * Differentially private training (DP-SGD); unset trains normally (the CLI's `--dp`).
 */
dp?: DpOptions, 
/**
 * Recompute each decoder layer (the layer-stack families) in the backward pass instead of
 * keeping its activations: about one layer's activations in memory, for a second forward
 * pass. Not with LoRA dropout or prefix tuning (those train without it).
 */
gradientCheckpointing: boolean, };

/**
 * What [`prepare`] reports before the first step (the start event of a run).
 */
export type TrainStart = { trainableParameters: number, totalParameters: number, totalSteps: number, trainExamples: number, evalExamples: number, warnings: Array<string>, labels: Array<string> | null, 
/**
 * Whether the run trains a new adapter or continues the attached one.
 */
adapter: AdapterChoice, };

/**
 * One optimiser step, as the CLI prints it (one JSON line) and the page draws it.
 */
export type StepReport = { step: number, totalSteps: number, 
/**
 * Fractional epoch reached.
 */
epoch: number, loss: number, lr: number, gradNorm: number, tokensPerS: number, elapsedS: number, etaS: number, 
/**
 * DP runs: epsilon spent so far (at the run's delta, by the run's accountant).
 */
epsilon?: number, 
/**
 * DP runs: the size of this step's Poisson-sampled batch (can be 0; the
 * loss and grad_norm, the mean per-example unclipped norm, are then null).
 */
batchSize?: number, };

/**
 * Metrics on an eval set.
 */
export type EvalMetrics = { loss: number, 
/**
 * Causal LM: `exp(loss)`.
 */
perplexity?: number, 
/**
 * Classification.
 */
accuracy?: number, macroF1?: number, examples: number, };

/**
 * What [`Run::next`] reports: a step, an evaluation, the end of the run.
 */
export type CoreEvent = { "event": "step" } & StepReport | { "event": "eval", step: number, metrics: EvalMetrics, } | { "event": "done", step: number, reason: string, };

/**
 * The loaded model, as `Tuner.info` describes it.
 */
export type ModelInfo = { 
/**
 * Bytes the weights take once loaded (f32 values and quantized blocks; `weightBytes`).
 */
estimatedBytes: number, 
/**
 * Whether an adapter is attached (trained, loaded or resumed).
 */
hasAdapter: boolean, 
/**
 * The attached adapter's PEFT type (`LORA`, `IA3`, ...), as its `adapter_config.json` says.
 */
peftType: string | null, 
/**
 * transformers class, e.g. `LlamaForCausalLM`.
 */
architecture: string, modelType: string, 
/**
 * `causal-lm`, `feature-extraction` or `seq-cls`.
 */
task: string, numParameters: number, 
/**
 * Dtypes as stored in the files (`F32`, `BF16`, `Q4_1`...).
 */
dtypes: Array<string>, 
/**
 * Block formats kept quantized on the device (`Q4_K`...); empty when every weight is f32.
 */
deviceBlocks: Array<string>, 
/**
 * Bytes the base weights take on the device: f32 values plus quantized blocks.
 */
weightBytes: number, format: string, vocabSize: number, hiddenSize: number, numLayers: number, contextLength: number, numLabels: number | null, hasChatTemplate: boolean, };

/**
 * One text's class: the most likely label and every label's probability.
 */
export type Classification = { label: string, 
/**
 * Probability of each label, by label name (the names are the model's or the training data's).
 */
probs: Record<string, number>, };

/**
 * One weight as the plan sees it.
 */
export type PlanTensor = { 
/**
 * Hugging Face name (GGUF names are mapped).
 */
name: string, 
/**
 * PyTorch-order shape.
 */
shape: Array<number>, 
/**
 * Bytes as held on the device.
 */
bytes: number, };

/**
 * The weights: as stored, and as they will be held.
 */
export type WeightsPlan = { 
/**
 * Values of every float tensor in the files (as `ModelInfo::num_parameters` counts them).
 */
parameters: number, 
/**
 * Values the network keeps on the device (a tied checkpoint's stored
 * `lm_head` and GGUF's `rope_freqs` are not kept).
 */
deviceParameters: number, 
/**
 * Dtypes in the files (`F32`, `BF16`, `Q4_1`...).
 */
storedDtypes: Array<string>, 
/**
 * Bytes of tensor data in the files.
 */
storedBytes: number, 
/**
 * How weights are held on the device: `F32`, and the block formats kept quantized
 * (`F32+Q4_K+Q6_K`).
 */
deviceDtype: string, 
/**
 * Bytes the weights take on the device.
 */
deviceBytes: number, 
/**
 * The weight with the largest device buffer (f32 values, or a block weight's codes; it
 * must fit one buffer).
 */
largest: PlanTensor, };

/**
 * One training micro-batch's memory.
 */
export type TrainingPlan = { method: string, task: string, batch: number, seqLen: number, 
/**
 * Positions per row: `seq_len` plus prompt tuning's virtual tokens.
 */
positions: number, 
/**
 * Trainable values (adapter, trained biases, a classification head).
 */
trainableParameters: number, 
/**
 * Trainable values with their gradients and optimiser state (AdamW: two
 * moments; SGD: momentum when it is set).
 */
adapterBytes: number, 
/**
 * Activations of one micro-batch saved for the backward pass (an estimate per layer).
 */
activationsBytes: number, 
/**
 * The LM head's loss: with a frozen head, one chunk of at most
 * `train::LOGITS_CHUNK` logits (logits, log-softmax, their gradients) and the
 * rows' hidden-state gradient; else the whole `[batch, positions, vocab]`
 * logits, scored copy, log-softmax and gradients (0 for classification).
 */
logitsBytes: number, 
/**
 * The largest single buffer of one micro-batch (token logits, attention scores, MLP activations).
 */
largestActivation: PlanTensor, 
/**
 * Prompt tuning's virtual tokens (extra positions) and prefix tuning's (extra keys).
 * Whether each layer is recomputed in the backward pass (asked for, and applicable).
 */
gradientCheckpointing: boolean, };

/**
 * What a device can hold.
 */
export type DeviceLimits = { 
/**
 * Host memory the core may use (wasm32: 4 GiB at most).
 */
memoryBytes: number | null, 
/**
 * How messages name `memory_bytes` (`the wasm32 memory`, `the maxBytes limit`).
 */
memoryName: string, 
/**
 * Largest single buffer (WebGPU: `maxStorageBufferBindingSize`, at most `maxBufferSize`).
 */
maxBufferBytes: number | null, 
/**
 * True when device memory is host memory (the CPU backend): weights and
 * training state then count against `memory_bytes` as well.
 */
deviceIsHost: boolean, };

/**
 * Why a plan does not fit.
 */
export type PlanError = { 
/**
 * `device`.
 */
kind: CoreErrorKind, 
/**
 * The item that does not fit (a tensor, the weights, `options`).
 */
source: string, 
/**
 * What does not fit and what would.
 */
message: string, };

/**
 * A memory plan checked against a device's limits (`Tuner.plan`).
 */
export type MemoryPlan = { 
/**
 * Host (wasm) memory at its peak: the load, and on the CPU backend the weights and training state too.
 */
hostPeakBytes: number, 
/**
 * What the plan was checked against.
 */
limits: DeviceLimits, fits: boolean, 
/**
 * Why it does not fit (kind `device`): the largest item and what would fit.
 */
error?: PlanError, 
/**
 * `safetensors` or `gguf`.
 */
format: string, modelType: string, vocabSize: number, hiddenSize: number, numLayers: number, 
/**
 * Bytes of all model files together.
 */
fileBytes: number, weights: WeightsPlan, 
/**
 * Host memory while loading: the weights as they will be held (f32 values, unpacked
 * blocks), the largest tensor as stored (weight files are read a tensor at a time), the JSON
 * files, and one f32 weight's transposed copy.
 */
hostLoadBytes: number, 
/**
 * The training job's memory, when a job was given.
 */
training: TrainingPlan | null, 
/**
 * Device memory after loading, with training: weights, adapter state, activations and logits.
 */
deviceBytes: number, };

/**
 * What `validateData` (the core's `validate`) checks a dataset for.
 */
export type ValidateSpec = { 
/**
 * The task to train (default: `seq-cls` for rows with labels, else `causal-lm`).
 */
task?: Task, 
/**
 * The training sequence length: truncation is counted against it (default 128, training's default).
 */
seqLen?: number, 
/**
 * Also return classification rows (`examples`) or chat conversations (`conversations`) as
 * parsed, for a caller that splits or shows them without a parser of its own (default false).
 */
examples?: boolean, };

/**
 * A problem in a dataset, as training would report it.
 */
export type DataProblem = { 
/**
 * `input` (a row) or `format` (the chat template cannot render it).
 */
kind: "input" | "format", 
/**
 * The file (or tokenizer, or chat template) it is about.
 */
source: string, 
/**
 * The 1-based line of the row in the file; null when it is about the whole file.
 */
line: number | null, 
/**
 * The whole message, `file: line N: what`, as training's error would read.
 */
message: string, };

/**
 * A class label and the rows that have it.
 */
export type LabelCount = { label: string, count: number, };

/**
 * A classification row as the parser read it.
 */
export type LabelledExample = { text: string, 
/**
 * Trimmed, as training reads it.
 */
label: string, };

/**
 * Token counts of a dataset, before truncation (with a model's tokenizer only).
 */
export type TokenCounts = { 
/**
 * All rows' tokens, before truncation.
 */
total: number, 
/**
 * The longest row.
 */
longest: number, 
/**
 * The sequence length checked against.
 */
seqLen: number, 
/**
 * Examples training would make of the rows (`txt`: blocks of the sequence length).
 */
examples: number, };

/**
 * What `validateData` found: the counts training would see, and every problem
 * (the first 100) with its line.
 */
export type DataValidation = { 
/**
 * The file name (for a string, Blob or array: `data.jsonl`, `data.csv` or `data.txt`).
 */
source: string, 
/**
 * The detected format; null when the file could not be read at all (not UTF-8, a JSON array, ...).
 */
format: "jsonl-text" | "jsonl-prompt-completion" | "jsonl-messages" | "jsonl-text-label" | "csv-text-label" | "txt" | null, 
/**
 * The task checked for (null when no row parsed).
 */
task: Task | null, 
/**
 * Rows that parsed (a `txt` file is one row: the whole text).
 */
rows: number, 
/**
 * Classification data: each label (in the order of the classes training would make) and its rows; else null.
 */
labels: Array<LabelCount> | null, 
/**
 * With the `examples` option, classification data's rows that parsed, in file order; else null.
 */
examples: Array<LabelledExample> | null, 
/**
 * With the `examples` option, chat data's conversations (`messages` rows) that parsed, in
 * file order; else null.
 */
conversations: { role: string, content: string }[][] | null, 
/**
 * With a model's tokenizer, when the rows that parsed encode: token counts; else null.
 */
tokens: TokenCounts | null, 
/**
 * Training's notes on the data: rows truncated at the sequence length, or skipped.
 */
warnings: Array<string>, 
/**
 * Every problem (the first 100), in file order, then any about the data as a whole.
 */
problems: Array<DataProblem>, 
/**
 * No problems: training would accept this data.
 */
ok: boolean, };
