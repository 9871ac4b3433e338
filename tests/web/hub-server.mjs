// A stand-in for the Hugging Face Hub on loopback, for tests/web/hub.test.mjs.
// It answers with the Hub's URL scheme and headers, as huggingface.co does:
//   GET /api/models/{repo}/revision/{rev}[?blobs=true] -> { id, sha, siblings: [{ rfilename, size, lfs? }] }
//   GET /{repo}/resolve/{rev}/{path} -> the file, with x-repo-commit and etag; large (LFS) files
//       answer 302 to a second "CDN" server (another loopback port) with x-linked-size/x-linked-etag
//   errors: 401 without a token (x-error-code RepoNotFound for unknown or private repositories,
//       GatedRepo for gated ones), 403 GatedRepo for a token without access,
//       404 RepoNotFound (with a token) / RevisionNotFound / EntryNotFound
// CORS as the Hub sends it (preflights for Authorization, exposed headers). Repositories are
// made from fixture directories; `update` commits new contents (a new sha), so a client that
// caches by commit must fetch again. Every request is logged for the tests to inspect.
import { createServer } from "node:http";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const CORS = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Headers": "authorization, range, content-type, accept",
  "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
  "Access-Control-Expose-Headers": "x-repo-commit, x-error-code, x-error-message, etag, x-linked-size, x-linked-etag, content-length, content-range, accept-ranges",
  "Cross-Origin-Resource-Policy": "cross-origin",
};

/** The files of a directory (not recursive) as { name: Buffer }. */
export function dirFiles(dir, only) {
  const out = {};
  for (const name of readdirSync(dir)) {
    if (only && !only.includes(name)) continue;
    if (statSync(join(dir, name)).isFile()) out[name] = readFileSync(join(dir, name));
  }
  return out;
}

const sha1 = (b) => createHash("sha1").update(b).digest("hex");
const sha256 = (b) => createHash("sha256").update(b).digest("hex");

function listen(server) {
  return new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => ok(server.address().port));
  });
}

/**
 * Starts the hub and its CDN. `repos`: { "owner/name": { files: { path: Buffer }, gated?, private? } }.
 * Options: `tokens` (valid tokens, each with the repositories it may read: { hf_x: ["owner/name"] } ),
 * `lfsOver` (files larger than this many bytes, and every .safetensors/.gguf, go through the CDN),
 * `slow` ({ path: ms per 64 KiB chunk }: the CDN streams that file slowly, for abort tests).
 */
export async function startHub({ repos = {}, tokens = {}, lfsOver = 10 * 1024, slow = {} } = {}) {
  const log = [];
  const state = new Map(); // repo -> { commits: Map(sha -> files), head, gated, private, version }
  const blobs = new Map(); // sha256 -> Buffer (the CDN's store)
  const cdnClosed = []; // CDN responses the client closed before the end

  const commit = (repo, files) => {
    const s = state.get(repo);
    s.version += 1;
    const sha = sha1(`${repo}\n${s.version}\n${Object.keys(files).sort().join("\n")}`);
    s.commits.set(sha, files);
    s.head = sha;
    return sha;
  };
  for (const [repo, r] of Object.entries(repos)) {
    state.set(repo, { commits: new Map(), head: null, gated: !!r.gated, private: !!r.private, version: 0 });
    commit(repo, r.files);
  }

  let cdnPort = 0;
  const isLfs = (path, b) => b.length > lfsOver || /\.(safetensors|gguf)$/.test(path);

  const cdn = createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    log.push({ server: "cdn", method: req.method, path: url.pathname, auth: !!req.headers.authorization });
    if (req.method === "OPTIONS") return res.writeHead(204, CORS).end();
    const key = url.pathname.replace(/^\/blobs\//, "");
    const b = blobs.get(key);
    if (!b) return res.writeHead(404, { ...CORS, "content-type": "text/plain" }).end("no such blob");
    res.writeHead(200, { ...CORS, "content-type": "application/octet-stream", "content-length": b.length, etag: `"${key}"` });
    if (req.method === "HEAD") return res.end();
    const delay = slow[url.searchParams.get("path")];
    if (!delay) return res.end(b);
    let off = 0;
    let finished = false;
    res.on("close", () => {
      if (!finished) cdnClosed.push(url.searchParams.get("path"));
    });
    const tick = () => {
      if (res.destroyed) return;
      const end = Math.min(off + 64 * 1024, b.length);
      res.write(b.subarray(off, end));
      off = end;
      if (off >= b.length) {
        finished = true;
        res.end();
      } else setTimeout(tick, delay);
    };
    tick();
  });

  const hub = createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    const auth = req.headers.authorization;
    const token = auth?.startsWith("Bearer ") ? auth.slice(7) : undefined;
    log.push({ server: "hub", method: req.method, path: url.pathname, auth: !!auth, token });
    if (req.method === "OPTIONS") return res.writeHead(204, CORS).end();
    const fail = (status, code, message) =>
      res.writeHead(status, { ...CORS, "content-type": "application/json", ...(code ? { "x-error-code": code } : {}), "x-error-message": message }).end(JSON.stringify({ error: message }));

    let m = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    const api = !!m;
    if (!m) m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (!m) return fail(404, null, "Not Found");
    const repo = m[1];
    const rev = decodeURIComponent(m[2]);
    const path = m[3] && m[3].split("/").map(decodeURIComponent).join("/");
    const s = state.get(repo);
    const known = token !== undefined && token in tokens;
    const allowed = known && tokens[token].includes(repo);
    // The Hub hides private and unknown repositories alike: 401 without a token, 404 with one.
    if (!s || (s.private && !allowed)) {
      if (token === undefined || !known) return fail(401, "RepoNotFound", "Repository not found");
      return fail(404, "RepoNotFound", "Repository not found");
    }
    if (token !== undefined && !known) return fail(401, null, "Invalid credentials in Authorization header");
    const sha = rev === "main" ? s.head : s.commits.has(rev) ? rev : null;
    if (!sha) return fail(404, "RevisionNotFound", `Invalid rev id: ${rev}`);
    const files = s.commits.get(sha);
    if (api) {
      const siblings = Object.entries(files).map(([p, b]) => ({
        rfilename: p,
        ...(url.searchParams.get("blobs") === "true" ? { size: b.length, blobId: sha1(b), ...(isLfs(p, b) ? { lfs: { sha256: sha256(b), size: b.length, pointerSize: 134 } } : {}) } : {}),
      }));
      const body = JSON.stringify({ _id: sha.slice(0, 24), id: repo, sha, private: s.private, gated: s.gated ? "manual" : false, siblings });
      return res.writeHead(200, { ...CORS, "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body) }).end(body);
    }
    // Gated files need a token of an account with access (the repository's metadata stays public).
    if (s.gated && !allowed) {
      if (token === undefined) return fail(401, "GatedRepo", `Access to model ${repo} is restricted. You must have access to it and be authenticated to access it. Please log in.`);
      return fail(403, "GatedRepo", `Access to model ${repo} is restricted and you are not in the authorized list. Visit https://huggingface.co/${repo} to ask for access.`);
    }
    const b = files[path];
    if (!b) return fail(404, "EntryNotFound", `${path} does not exist on "${rev}"`);
    const common = { ...CORS, "x-repo-commit": sha };
    if (isLfs(path, b)) {
      const key = sha256(b);
      blobs.set(key, b);
      return res
        .writeHead(302, {
          ...common,
          location: `http://127.0.0.1:${cdnPort}/blobs/${key}?path=${encodeURIComponent(path)}`,
          "x-linked-size": String(b.length),
          "x-linked-etag": `"${key}"`,
          etag: `"${sha1(b)}"`,
        })
        .end();
    }
    res.writeHead(200, { ...common, "content-type": "application/octet-stream", "content-length": b.length, etag: `"${sha1(b)}"` });
    res.end(req.method === "HEAD" ? undefined : b);
  });

  cdnPort = await listen(cdn);
  const hubPort = await listen(hub);
  return {
    url: `http://127.0.0.1:${hubPort}`,
    cdnUrl: `http://127.0.0.1:${cdnPort}`,
    log,
    cdnClosed,
    /** The current commit of `repo`. */
    head: (repo) => state.get(repo).head,
    /** Commits new contents to `repo` (a new sha); returns the sha. */
    update: (repo, files) => commit(repo, files),
    close: async () => {
      for (const s of [hub, cdn]) {
        s.closeAllConnections?.();
        await new Promise((ok) => s.close(() => ok()));
      }
    },
  };
}
