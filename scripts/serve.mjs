// A small static server for the repository root: the page (www/), the package
// (web/dist/) and the bundled models (models/) from one origin, with the
// headers the page relies on (COOP/COEP for cross-origin isolation, the wasm
// MIME type for streaming compilation). `/` redirects to `/www/`.
//
//   node scripts/serve.mjs            # 127.0.0.1:$PORT (default 8080)
//   import { startServer } from "./serve.mjs"   # tests: a free port
import { createServer } from "node:http";
import { createReadStream, promises as fs } from "node:fs";
import { join, extname, resolve, normalize, sep, dirname } from "node:path";
import { fileURLToPath } from "node:url";

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

/**
 * Serves `root` on `host:port` (port 0: a free one). Returns { url, port, log, served, close }.
 * No caching: the page and the package change while developing.
 */
export async function startServer({ root = ROOT, port = 0, host = "127.0.0.1", isolated = true } = {}) {
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
    /** Body bytes sent, per request: { path, bytes, range }. */
    served,
    close: () => new Promise((ok) => { server.closeAllConnections?.(); server.close(() => ok()); }),
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const port = Number(process.env.PORT || 8080);
  const s = await startServer({ port });
  console.log(`webpeft page: ${s.url}/www/`);
}
