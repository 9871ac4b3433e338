// The memory plan in the worker: reads only the headers of a model's files
// (HTTP Range requests for URLs and the Hub, Blob.slice for local files), asks
// the core (`planModel`) what loading and training will take, and refuses
// with a typed "device" error before anything is downloaded or read whole.
import type { Backend, MemoryPlan, ModelPayload } from "./types.js";
import { camel, type Snake } from "./casing.js";
import { WebPeftError } from "./errors.js";
import { authHeaders, openCache, repoInfo, resolveUrl } from "./hub.js";

/** The part of the wasm core the plan uses (`crate/src/web.rs` `planModel`). */
export interface PlanCore {
  planModel?(names: string[], heads: Uint8Array[], lens: number[], options: unknown, limits: unknown, quantize?: string): any;
}

/** wasm32's address space: what a tab's core can hold at most. */
export const WASM32_MEMORY = 4 * 1024 ** 3;

/** What the plan is checked against. */
export interface PlanLimits {
  memory_bytes: number;
  memory_name: string;
  max_buffer_bytes?: number;
  device_is_host: boolean;
}

/** The limits of a device: `maxBytes` (default wasm32's 4 GiB), the largest buffer (WebGPU's binding limit). */
export function planLimits(backend: Backend, maxBytes?: number, maxBufferBytes?: number): PlanLimits {
  return {
    memory_bytes: maxBytes ?? WASM32_MEMORY,
    memory_name: maxBytes !== undefined ? "the maxBytes limit" : "the wasm32 memory (4 GiB)",
    max_buffer_bytes: maxBufferBytes,
    device_is_host: backend === "cpu",
  };
}

/** One file whose head is read piece by piece. */
interface Source {
  name: string;
  len: number;
  head: Uint8Array;
  /** Bytes [start, end) of the file. */
  read(start: number, end: number): Promise<Uint8Array>;
}

function baseName(name: string): string {
  return name.slice(name.replace(/\\/g, "/").lastIndexOf("/") + 1);
}

function fileNameOf(url: string): string {
  const path = new URL(url, self.location.href).pathname;
  return decodeURIComponent(path.slice(path.lastIndexOf("/") + 1));
}

const concat = (a: Uint8Array, b: Uint8Array) => {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
};

/** Bytes [start, end) of a URL with a Range request, and the file's length. A server that ignores Range is read only up to `end`. */
async function fetchRange(url: string, start: number, end: number, headers: Record<string, string> = {}): Promise<{ bytes: Uint8Array; total: number } | null> {
  const file = fileNameOf(url);
  let res: Response;
  try {
    res = await fetch(url, { headers: { ...headers, Range: `bytes=${start}-${Math.max(start, end - 1)}` }, cache: "no-store" });
  } catch (e) {
    throw new WebPeftError("io", `${file}: could not fetch ${url} (${(e as Error).message})`, file);
  }
  if (res.status === 404) return null;
  if (res.status === 416) return { bytes: new Uint8Array(0), total: start };
  if (!res.ok) throw new WebPeftError("io", `${file}: ${url} answered HTTP ${res.status} ${res.statusText}`.trim(), file);
  if (res.status === 206) {
    const range = /\/(\d+)\s*$/.exec(res.headers.get("content-range") ?? "");
    const bytes = new Uint8Array(await res.arrayBuffer());
    return { bytes, total: range ? Number(range[1]) : start + bytes.length };
  }
  // 200: the whole file is coming; take what is needed and stop the download.
  const total = Number(res.headers.get("content-length"));
  const reader = res.body!.getReader();
  let got = new Uint8Array(0);
  while (got.length < end) {
    const { done, value } = await reader.read();
    if (done) break;
    got = concat(got, value);
  }
  await reader.cancel().catch(() => {});
  return { bytes: got.slice(start, end), total: Number.isFinite(total) && total > 0 ? total : got.length };
}

async function urlSource(url: string, first: number, optional = false, headers: Record<string, string> = {}): Promise<Source | null> {
  const r = await fetchRange(url, 0, first, headers);
  if (!r) {
    if (optional) return null;
    const file = fileNameOf(url);
    throw new WebPeftError("io", `${file}: ${url} answered HTTP 404`, file);
  }
  return { name: fileNameOf(url), len: r.total, head: r.bytes, read: async (s, e) => (await fetchRange(url, s, e, headers))?.bytes ?? new Uint8Array(0) };
}

/** How much of a file to read first: JSON whole, the 8-byte length of a safetensors header, 1 MiB of a GGUF. */
function firstBytes(name: string): number {
  if (name.endsWith(".safetensors")) return 8;
  if (name.endsWith(".gguf")) return 1 << 20;
  return 64 << 20; // JSON: whole (config.json, the shard index)
}

const wanted = (name: string) => !/^tokenizer/.test(name) && (name.endsWith(".json") || name.endsWith(".safetensors") || name.endsWith(".gguf"));

/** The files the plan reads, opened on their first bytes. */
async function openSources(model: ModelPayload): Promise<Source[]> {
  if (model.kind === "files") {
    const out: Source[] = [];
    model.names.forEach((n, i) => {
      const name = baseName(n);
      if (!wanted(name)) return;
      const blob = model.blobs[i];
      const read = async (s: number, e: number) =>
        blob instanceof Uint8Array ? blob.subarray(s, e) : new Uint8Array(await blob.slice(s, e).arrayBuffer());
      const len = blob instanceof Uint8Array ? blob.length : blob.size;
      out.push({ name, len, head: new Uint8Array(0), read });
    });
    for (const s of out) s.head = await s.read(0, Math.min(s.len, firstBytes(s.name)));
    return out;
  }
  if (model.kind === "urls") {
    const out: Source[] = [];
    for (const url of model.urls) {
      const name = fileNameOf(url);
      if (wanted(name)) out.push((await urlSource(url, firstBytes(name)))!);
    }
    return out;
  }
  // The Hub as Tuner.load reads it: the revision resolved to a commit, the token sent.
  const info = await repoInfo({ repo: model.repo, revision: model.revision, endpoint: model.endpoint, token: model.token }, await openCache());
  const auth = authHeaders(model.token);
  const hub = (path: string, first: number, optional = false) => urlSource(resolveUrl(model.endpoint, model.repo, info.commit, path), first, optional, auth);
  if (model.file?.toLowerCase().endsWith(".gguf")) return [(await hub(model.file, firstBytes(model.file)))!];
  const out = [(await hub("config.json", firstBytes("config.json")))!];
  const single = await hub("model.safetensors", 8, true);
  if (single) return [...out, single];
  const index = await hub("model.safetensors.index.json", firstBytes(".json"), true);
  if (!index) {
    throw new WebPeftError("io", `${model.repo}: neither model.safetensors nor model.safetensors.index.json was found`, model.repo);
  }
  out.push(index);
  const map = JSON.parse(new TextDecoder().decode(index.head)).weight_map ?? {};
  for (const shard of [...new Set(Object.values(map) as string[])].sort()) out.push((await hub(shard, 8))!);
  return out;
}

/**
 * Plans `model` for `options` (a training job in the core's snake_case, or undefined for
 * loading only) against `limits`, reading only headers. Returns the plan (camelCase keys) with `fits` and,
 * when it does not fit, `error`; undefined when the core has no `planModel` (an older or mock build).
 */
export async function planModel(core: PlanCore, model: ModelPayload, options: Record<string, unknown> | undefined, limits: PlanLimits, quantize?: string): Promise<MemoryPlan | undefined> {
  if (typeof core.planModel !== "function") return undefined;
  const sources = await openSources(model);
  for (let round = 0; round < 64; round++) {
    const r = core.planModel(sources.map((s) => s.name), sources.map((s) => s.head), sources.map((s) => s.len), options, limits, quantize);
    if (!r?.need) return camel<MemoryPlan>(r as Snake<MemoryPlan>);
    for (const { name, bytes } of r.need as { name: string; bytes: number }[]) {
      const s = sources.find((x) => x.name === name)!;
      const more = await s.read(s.head.length, bytes);
      if (more.length === 0) throw new WebPeftError("format", `${name}: the file ended inside its header`, name);
      s.head = concat(s.head, more);
    }
  }
  throw new WebPeftError("format", "model: the headers did not parse after 64 reads", "model");
}

/** Plans before loading and throws the plan's typed "device" error when it does not fit. */
export async function refuseOverPlan(core: PlanCore, model: ModelPayload, limits: PlanLimits, quantize?: string): Promise<MemoryPlan | undefined> {
  const plan = await planModel(core, model, undefined, limits, quantize);
  if (plan && !plan.fits && plan.error) throw new WebPeftError("device", plan.error.message, plan.error.source);
  return plan;
}
