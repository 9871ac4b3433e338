// A small static server for the repository root: the page (www/), the package
// (web/dist/) and the bundled models (models/) from one origin, with the
// headers the page relies on (COOP/COEP for cross-origin isolation, the wasm
// MIME type for streaming compilation). `/` redirects to `/www/`.
//
// The page's own files (wasm, JavaScript, HTML, CSS, source maps, SVG) go out
// compressed when the request's Accept-Encoding allows it: brotli, else gzip
// (`Vary: Accept-Encoding`); data and model files, Range requests and clients
// that ask for neither get the file as it is. Compressed bodies are made once
// per file content: large files (the wasm) are kept on disk by content hash in
// $CARGO_TARGET_DIR/compressed/ (scripts/wasm-sizes.mjs fills it after each
// wasm build, so the first page load does not wait for brotli), small ones in memory.
//
//   node scripts/serve.mjs            # 127.0.0.1:$PORT (default 8080)
//   import { startServer } from "./serve.mjs"   # tests: a free port
import { createServer } from "node:http";
import { createReadStream, promises as fs } from "node:fs";
import { createHash } from "node:crypto";
import { homedir } from "node:os";
import { join, extname, resolve, normalize, sep, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import zlib from "node:zlib";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".map": "application/json",
  ".csv": "text/csv; charset=utf-8",
  ".jsonl": "application/jsonl",
  ".txt": "text/plain; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
  ".ts": "text/plain; charset=utf-8",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
};

/** What goes out compressed: the page's and the package's own files, not data or models. */
export const COMPRESSIBLE = new Set([".wasm", ".js", ".mjs", ".html", ".css", ".map", ".svg"]);

/** The default on-disk cache of compressed large files (shared with scripts/wasm-sizes.mjs). */
export const COMPRESSED_CACHE = process.env.WEBPEFT_COMPRESSED_CACHE
  || join(process.env.CARGO_TARGET_DIR || join(homedir(), ".cache/webpeft/target"), "compressed");

/** Files at least this large are cached on disk by content hash; smaller ones in memory. */
const DISK_CACHE_MIN = 256 * 1024;

/**
 * The encoding to answer an Accept-Encoding header with: "br", "gzip" or null
 * (the file as it is). Honours q-values (`q=0` refuses) and `*`; brotli first.
 */
export function pickEncoding(header) {
  if (!header) return null;
  const q = new Map();
  for (const part of String(header).split(",")) {
    const [name, ...params] = part.trim().toLowerCase().split(";");
    if (!name) continue;
    let weight = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/.exec(p);
      if (m) weight = Number(m[1]);
    }
    q.set(name.trim(), Number.isFinite(weight) ? weight : 0);
  }
  for (const enc of ["br", "gzip"]) {
    const w = q.has(enc) ? q.get(enc) : q.get("*");
    if (w !== undefined && w > 0) return enc;
  }
  return null;
}

/** Compresses `bytes` as `encoding`; brotli at `quality` (default 5: fast enough to do on a request). */
export function compress(bytes, encoding, { quality = 5 } = {}) {
  if (encoding === "br") {
    return promisify(zlib.brotliCompress)(bytes, {
      params: {
        [zlib.constants.BROTLI_PARAM_QUALITY]: quality,
        [zlib.constants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
      },
    });
  }
  return promisify(zlib.gzip)(bytes, { level: 9 });
}

/** The cache key of a file's content: the first 16 hex digits of its SHA-256. */
export const contentKey = (bytes) => createHash("sha256").update(bytes).digest("hex").slice(0, 16);

// Compressed bodies: in memory by path, size, mtime and encoding (a promise, so
// concurrent requests compress once). Bounded; the oldest entry goes first.
const memory = new Map();
const MEMORY_ENTRIES = 256;

async function compressedBody(file, st, encoding, cacheDir) {
  const id = `${file}\0${st.size}\0${st.mtimeMs}\0${encoding}\0${cacheDir}`;
  let p = memory.get(id);
  if (!p) {
    p = (async () => {
      const bytes = await fs.readFile(file);
      if (bytes.length < DISK_CACHE_MIN || !cacheDir) return compress(bytes, encoding);
      const cached = join(cacheDir, `${contentKey(bytes)}.${encoding === "br" ? "br" : "gz"}`);
      try {
        return await fs.readFile(cached);
      } catch {}
      const out = await compress(bytes, encoding);
      try {
        await fs.mkdir(cacheDir, { recursive: true });
        const tmp = `${cached}.${process.pid}.${Date.now()}.tmp`;
        await fs.writeFile(tmp, out);
        await fs.rename(tmp, cached);
      } catch {} // a read-only cache only costs the next request another compression
      return out;
    })();
    p.catch(() => memory.delete(id));
    memory.set(id, p);
    while (memory.size > MEMORY_ENTRIES) memory.delete(memory.keys().next().value);
  }
  return p;
}

/**
 * Serves `root` on `host:port` (port 0: a free one). Returns { url, port, log, served, close }.
 * No caching: the page and the package change while developing. `cacheDir`: where
 * compressed large files are kept (null: in memory only).
 */
export async function startServer({ root = ROOT, port = 0, host = "127.0.0.1", isolated = true, cacheDir = COMPRESSED_CACHE } = {}) {
  const base = resolve(root);
  const log = [];
  const served = [];
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://localhost");
    log.push(`${req.method} ${url.pathname}`);
    // `isolated: false` drops COOP/COEP, for testing pages that are not cross-origin isolated.
    const headers = {
      ...(isolated ? { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" } : {}),
      "Cross-Origin-Resource-Policy": "same-origin",
      "Cache-Control": "no-store",
    };
    if (url.pathname === "/" || url.pathname === "/www") {
      res.writeHead(302, { ...headers, Location: "/www/" }).end();
      return;
    }
    let path;
    try {
      path = normalize(join(base, decodeURIComponent(url.pathname)));
    } catch {
      res.writeHead(400, headers).end("bad path");
      return;
    }
    // Nothing outside the root, and no dot-folders (.git) or node_modules internals beyond what the page loads.
    if ((path !== base && !path.startsWith(base + sep)) || /[\\/]\.(?!well-known)/.test(path.slice(base.length))) {
      res.writeHead(403, headers).end("forbidden");
      return;
    }
    let file = path;
    try {
      let st = await fs.stat(file);
      if (st.isDirectory()) {
        file = join(file, "index.html");
        st = await fs.stat(file);
      }
      const type = MIME[extname(file).toLowerCase()] || "application/octet-stream";
      // One `Range: bytes=a-b` (as the package's memory plan reads headers); `served` counts body bytes per path.
      const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
      if (range && req.method === "GET") {
        const start = Number(range[1]);
        const end = Math.min(range[2] ? Number(range[2]) : st.size - 1, st.size - 1);
        if (start >= st.size || end < start) {
          res.writeHead(416, { ...headers, "Content-Range": `bytes */${st.size}` }).end();
          return;
        }
        res.writeHead(206, { ...headers, "Content-Type": type, "Content-Length": end - start + 1, "Content-Range": `bytes ${start}-${end}/${st.size}`, "Accept-Ranges": "bytes" });
        served.push({ path: url.pathname, bytes: end - start + 1, range: true });
        createReadStream(file, { start, end }).pipe(res);
        return;
      }
      const compressible = COMPRESSIBLE.has(extname(file).toLowerCase());
      const encoding = compressible && !req.headers.range ? pickEncoding(req.headers["accept-encoding"]) : null;
      if (compressible) headers["Vary"] = "Accept-Encoding";
      if (encoding) {
        const body = await compressedBody(file, st, encoding, cacheDir);
        res.writeHead(200, { ...headers, "Content-Type": type, "Content-Encoding": encoding, "Content-Length": body.length });
        if (req.method === "HEAD") return res.end();
        served.push({ path: url.pathname, bytes: body.length, range: false, encoding });
        res.end(body);
        return;
      }
      res.writeHead(200, { ...headers, "Content-Type": type, "Content-Length": st.size, "Accept-Ranges": "bytes" });
      if (req.method === "HEAD") return res.end();
      served.push({ path: url.pathname, bytes: st.size, range: false });
      createReadStream(file).pipe(res);
    } catch {
      res.writeHead(404, { ...headers, "Content-Type": "text/plain" }).end("not found");
    }
  });
  await new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(port, host, ok);
  });
  const actual = server.address().port;
  return {
    url: `http://${host}:${actual}`,
    port: actual,
    log,
    /** Body bytes sent, per request: { path, bytes, range, encoding? } (compressed bytes when encoded). */
    served,
    close: () => new Promise((ok) => { server.closeAllConnections?.(); server.close(() => ok()); }),
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const port = Number(process.env.PORT || 8080);
  const s = await startServer({ port });
  console.log(`webpeft page: ${s.url}/www/`);
}
