// One casing rule for what the package returns: the core (and the CLI's JSON) writes
// snake_case keys, JavaScript gets camelCase ones. The declarations generated from the
// Rust types (core-types.ts) are camelCase; the worker renames the keys of the core's
// results with `camel` and those of the options it passes in with `snake`, so both
// sides meet. PEFT file contents (adapter_config.json, webpeft.json) are not renamed.
import type { DpOptions as DpSpec, TrainSpec } from "./core-types.js";

/** `gradNorm` -> `grad_norm`, `macroF1` -> `macro_f1` (at type level). */
export type SnakeKey<S extends string> = S extends `${infer C}${infer R}`
  ? `${C extends Lowercase<C> ? C : `_${Lowercase<C>}`}${SnakeKey<R>}`
  : S;

/** `T` as the core writes it: every key snake_case, deeply. */
export type Snake<T> = T extends readonly (infer E)[]
  ? Snake<E>[]
  : T extends Uint8Array | Float32Array | Float64Array | Uint32Array
    ? T
    : T extends object
      ? { [K in keyof T as K extends string ? SnakeKey<K> : K]: Snake<T[K]> }
      : T;

const camelKey = (k: string) => k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const snakeKey = (k: string) => k.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());

const isPlain = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !ArrayBuffer.isView(v) && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);

/**
 * A core result with camelCase keys, deeply (plain objects and arrays; typed arrays as
 * they are). Not for results whose keys are data, such as a classification's label names.
 */
export function camel<T>(v: Snake<T>): T {
  const walk = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(walk);
    if (!isPlain(x)) return x;
    const out: Record<string, unknown> = {};
    for (const [k, val] of Object.entries(x)) out[camelKey(k)] = walk(val);
    return out;
  };
  return walk(v) as T;
}

/** Options for the core: snake_case keys, deeply; `undefined` values left out. */
export function snake<T extends object>(v: T): Snake<T> {
  const walk = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(walk);
    if (!isPlain(x)) return x;
    const out: Record<string, unknown> = {};
    for (const [k, val] of Object.entries(x)) if (val !== undefined) out[snakeKey(k)] = walk(val);
    return out;
  };
  return walk(v) as Snake<T>;
}

// Every option of the core's training job, checked against the generated types: a
// field added to or taken from the Rust `TrainSpec` or `DpSpec` fails the type check here.
const TRAIN_KEYS: Record<keyof TrainSpec, true> = {
  task: true, method: true, adapter: true, r: true, alpha: true, dropout: true, targets: true, rslora: true,
  gaussianInit: true, virtualTokens: true, initText: true, epochs: true, steps: true, lr: true, batch: true,
  seqLen: true, warmup: true, schedule: true, optimizer: true, weightDecay: true, momentum: true, seed: true,
  shuffle: true, gradAccum: true, clip: true, evalEvery: true, evalSplit: true, patience: true, baseModel: true, dp: true,
  gradientCheckpointing: true,
};
const DP_KEYS: Record<keyof DpSpec, true> = { targetEpsilon: true, delta: true, maxGradNorm: true, noiseMultiplier: true, seed: true, accountant: true };

/**
 * An error `source` that names a training option as the core does (`seq_len`,
 * `dp.target_epsilon`), as the package's options spell it (`seqLen`, `dp.targetEpsilon`).
 * Any other source (a file name, "options", "train") is returned as it is.
 */
export function optionSource(source: string | undefined): string | undefined {
  if (!source) return source;
  const [first, ...rest] = source.split(".").map(camelKey);
  if (!(first in TRAIN_KEYS)) return source;
  if (rest.length === 0) return first;
  if (first === "dp" && rest.length === 1 && rest[0] in DP_KEYS) return `${first}.${rest[0]}`;
  return source;
}
