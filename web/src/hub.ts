// Hugging Face Hub access, shared by the main thread (Tuner.listFiles,
// Tuner.clearCache) and the worker (model downloads). It follows the Hub's
// HTTP API as @huggingface/hub and huggingface_hub use it: a revision (branch,
// tag or commit) is resolved to its commit with
// `GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true` (the
// commit's `sha` and its files with sizes), and files are downloaded from
// `{endpoint}/{repo}/resolve/{commit}/{file}` (large files redirect to a CDN).
// Downloads are cached in Cache Storage under their commit URL, so a
// repository that moved to a new commit is fetched again, and the last
// resolution is kept so a cached model loads offline. @huggingface/hub itself
// was measured (modelInfo + listFiles + downloadFile: 54 KB minified, 16 KB
// gzip, and its default entry pulls in node's `fs` unless the bundler picks its
// `browser` field); this module is the small part of it webpeft needs.
import { WebPeftError } from "./errors.js";
import type { HubFile, HubRepoInfo } from "./types.js";

export const DEFAULT_ENDPOINT = "https://huggingface.co";
/** The Cache Storage cache holding downloaded model files and revision lookups. */
export const MODEL_CACHE = "webpeft-models";

const REPO_ID = /^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/;

/** Throws an `input` error unless `repo` looks like a Hub model id ("owner/name" or "name"). */
export function checkRepo(repo: unknown, what = "hub"): string {
  if (typeof repo !== "string" || !REPO_ID.test(repo) || repo.includes("..") || repo.length > 200) {
    throw new WebPeftError("input", `${what}: ${JSON.stringify(repo)} is not a repository id like "owner/name"`, what);
  }
  return repo;
}

/** The Hub's base URL without a trailing slash; an `input` error unless http(s). */
export function checkEndpoint(endpoint: unknown): string {
  if (endpoint === undefined) return DEFAULT_ENDPOINT;
  let u: URL | null = null;
  if (typeof endpoint === "string" || endpoint instanceof URL) {
    try {
      u = new URL(String(endpoint));
    } catch {
      u = null;
    }
  }
  if (!u || (u.protocol !== "https:" && u.protocol !== "http:") || u.search || u.hash) {
    throw new WebPeftError("input", `endpoint: ${JSON.stringify(String(endpoint))} is not an http(s) URL like "https://huggingface.co"`, "endpoint");
  }
  return u.href.replace(/\/+$/, "");
}

export function checkToken(token: unknown): string | undefined {
  if (token === undefined) return undefined;
  if (typeof token !== "string" || !token.trim() || /[\s\r\n]/.test(token.trim())) {
    throw new WebPeftError("input", "token: give a Hugging Face access token (a string like \"hf_...\")", "token");
  }
  return token.trim();
}

export function checkRevision(revision: unknown): string {
  if (revision === undefined) return "main";
  if (typeof revision !== "string" || !revision || revision.length > 255 || /[\s\\]|\.\./.test(revision)) {
    throw new WebPeftError("input", `revision: ${JSON.stringify(revision)} is not a branch, tag or commit`, "revision");
  }
  return revision;
}

/** A path inside a repository (no "..", no leading "/"). */
export function checkRepoPath(path: unknown, what: string): string {
  if (typeof path !== "string" || !path || path.startsWith("/") || path.split("/").some((p) => p === ".." || p === "." || p === "") || /\\/.test(path)) {
    throw new WebPeftError("input", `${what}: ${JSON.stringify(path)} is not a file path inside the repository`, what);
  }
  return path;
}

export interface HubAccess {
  repo: string;
  revision: string;
  endpoint: string;
  token?: string;
  signal?: AbortSignal;
}

export function authHeaders(token?: string): Record<string, string> {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export function abortedError(op: string, detail = ""): WebPeftError {
  return new WebPeftError("aborted", `${op}: aborted${detail}`, op);
}

function isAbort(e: unknown): boolean {
  return !!e && typeof e === "object" && (e as { name?: unknown }).name === "AbortError";
}

/** `fetch` whose failures are typed: `aborted` when the signal fired, else `io` naming `what`. */
export async function hubFetch(url: string, what: string, init: RequestInit & { signal?: AbortSignal }, op = "load"): Promise<Response> {
  if (init.signal?.aborted) throw abortedError(op);
  try {
    return await fetch(url, init);
  } catch (e) {
    if (isAbort(e) || init.signal?.aborted) throw abortedError(op);
    throw new WebPeftError("io", `${what}: could not fetch ${url} (${e instanceof Error ? e.message : String(e)})`, what);
  }
}

/**
 * The typed error for a Hub answer that is not OK, from its status and
 * `x-error-code` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo):
 * kind `io`, `source` "owner/name/file", and what to do about it.
 */
export async function hubError(res: Response, a: Pick<HubAccess, "repo" | "revision" | "token">, file?: string): Promise<WebPeftError> {
  const code = res.headers.get("x-error-code") ?? "";
  let detail = res.headers.get("x-error-message") ?? "";
  if (!detail) {
    try {
      const t = (await res.text()).slice(0, 300);
      const j = /^\s*\{/.test(t) ? JSON.parse(t) : null;
      detail = (j && typeof j.error === "string" ? j.error : "") || "";
    } catch {
      detail = "";
    }
  }
  const where = file ? `${a.repo}/${file}` : a.repo;
  const status = `HTTP ${res.status}${res.statusText ? " " + res.statusText : ""}${code ? ` (${code})` : ""}`;
  let why: string;
  if (res.status === 401) {
    why = a.token
      ? "the token was refused (invalid or expired) or the repository does not exist"
      : code === "RepoNotFound"
        ? "the repository does not exist, or it is private: pass a token"
        : "the repository is gated or private: pass a token (option `token`) of an account that has access";
    if (code === "GatedRepo" && !a.token) why = "gated: pass a token (option `token`) of an account that has accepted its conditions";
  } else if (res.status === 403) {
    why = code === "GatedRepo" || /gated|restricted|access/i.test(detail)
      ? "gated: this token's account has no access yet (accept the model's conditions on its Hub page), or the token lacks read permission"
      : "access denied for this token";
  } else if (res.status === 404) {
    why = code === "RepoNotFound"
      ? "the repository does not exist (or it is private: pass a token)"
      : code === "RevisionNotFound"
        ? `the revision "${a.revision}" does not exist`
        : code === "EntryNotFound" || file
          ? `${file ?? "the file"} is not in the repository at revision "${a.revision}"`
          : "not found";
  } else {
    why = "the Hub answered with an error";
  }
  return new WebPeftError("io", `${where}: ${status}: ${why}${detail ? ` (${detail})` : ""}`, where);
}

async function openCache(): Promise<Cache | null> {
  try {
    return typeof caches !== "undefined" ? await caches.open(MODEL_CACHE) : null;
  } catch {
    return null; // e.g. an opaque origin; caching is only an optimisation
  }
}

export { openCache };

interface RevisionJson {
  sha?: unknown;
  siblings?: unknown;
}

function parseRevision(json: RevisionJson, a: HubAccess): { commit: string; files: HubFile[] } {
  const sha = json.sha;
  if (typeof sha !== "string" || !/^[0-9a-f]{40}$/.test(sha)) {
    throw new WebPeftError("format", `${a.repo}: the Hub's answer for revision "${a.revision}" has no commit sha`, a.repo);
  }
  const sib = Array.isArray(json.siblings) ? json.siblings : [];
  const files: HubFile[] = [];
  for (const s of sib) {
    if (!s || typeof s !== "object" || typeof (s as { rfilename?: unknown }).rfilename !== "string") continue;
    const o = s as { rfilename: string; size?: unknown; lfs?: { size?: unknown } };
    const size = typeof o.lfs?.size === "number" ? o.lfs.size : typeof o.size === "number" ? o.size : undefined;
    files.push({ path: o.rfilename, ...(size !== undefined ? { size } : {}) });
  }
  return { commit: sha, files };
}

/**
 * Resolves `revision` to its commit and lists the repository's files there.
 * The answer is cached; when the Hub cannot be reached the cached answer is
 * used (so a cached model loads offline).
 */
export async function repoInfo(a: HubAccess, cache?: Cache | null): Promise<HubRepoInfo> {
  const url = `${a.endpoint}/api/models/${a.repo}/revision/${encodeURIComponent(a.revision)}?blobs=true`;
  let res: Response;
  try {
    res = await hubFetch(url, a.repo, { headers: authHeaders(a.token), signal: a.signal });
  } catch (e) {
    const cached = e instanceof WebPeftError && e.kind === "io" && cache ? await cache.match(url).catch(() => undefined) : undefined;
    if (!cached) throw e;
    res = cached;
  }
  // A Hub that is down (5xx) is as good as unreachable when the answer is cached.
  const stale = !res.ok && res.status >= 500 && cache ? await cache.match(url).catch(() => undefined) : undefined;
  if (stale) res = stale;
  if (!res.ok) throw await hubError(res, a);
  let json: RevisionJson;
  const text = await res.clone().text();
  try {
    json = JSON.parse(text);
  } catch {
    throw new WebPeftError("format", `${a.repo}: the Hub's answer for revision "${a.revision}" is not JSON (is ${a.endpoint} a Hugging Face Hub?)`, a.repo);
  }
  const { commit, files } = parseRevision(json, a);
  if (cache) {
    await cache.put(url, new Response(text, { headers: { "content-type": "application/json" } })).catch(() => {});
  }
  return { repo: a.repo, revision: a.revision, commit, files };
}

/** A file's download URL at a commit. */
export function resolveUrl(endpoint: string, repo: string, commit: string, path: string): string {
  return `${endpoint}/${repo}/resolve/${commit}/${path.split("/").map(encodeURIComponent).join("/")}`;
}

/** Drops cached files of `repo` at other commits than `commit` (a repository that moved on). */
export async function pruneCache(cache: Cache, endpoint: string, repo: string, commit: string): Promise<void> {
  const prefix = `${endpoint}/${repo}/resolve/`;
  try {
    for (const req of await cache.keys()) {
      if (req.url.startsWith(prefix) && !req.url.startsWith(prefix + commit + "/")) await cache.delete(req);
    }
  } catch {
    // Best effort.
  }
}

/**
 * Deletes cached model files: all of them, or those of one repository (any
 * endpoint). Returns the number of entries removed.
 */
export async function clearCache(repo?: string): Promise<number> {
  if (typeof caches === "undefined") return 0;
  if (repo !== undefined) checkRepo(repo, "repo");
  try {
    if (repo === undefined) {
      const cache = await caches.open(MODEL_CACHE);
      const n = (await cache.keys()).length;
      await caches.delete(MODEL_CACHE);
      return n;
    }
    const cache = await caches.open(MODEL_CACHE);
    let n = 0;
    for (const req of await cache.keys()) {
      const p = new URL(req.url).pathname;
      if (p.includes(`/${repo}/resolve/`) || p.includes(`/api/models/${repo}/revision/`)) {
        if (await cache.delete(req)) n++;
      }
    }
    return n;
  } catch (e) {
    throw new WebPeftError("io", `cache: could not clear Cache Storage (${e instanceof Error ? e.message : String(e)})`, "cache");
  }
}
