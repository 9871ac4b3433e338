// Download size of the wasm cores: raw, gzip -9 and brotli, per file.
//
//   node scripts/wasm-sizes.mjs [--quality 11] [--prune] [--json] [FILE...]
//
// FILEs default to web/pkg/webpeft_bg.wasm and web/pkg-threads/webpeft_bg.wasm.
// --quality: brotli's quality (0-11, default 11, window 2^22 as node's zlib sets it). On the
//   23 MB main wasm quality 11 takes about 5 minutes on the shared 2 cores, quality 5
//   seconds; scripts/build-web.sh prints quality 5, the README's figures are quality 11.
// The compressed forms are written to the static server's cache ($CARGO_TARGET_DIR/compressed/,
// by content hash; scripts/serve.mjs), so `npm start` and the browser tests serve the wasm
// compressed without compressing it again; a better (smaller) brotli replaces a worse one.
// Figures are kept there too, so an unchanged file is not compressed again.
// --prune: remove the cache's entries for any other content (older builds).
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { ROOT, COMPRESSED_CACHE, compress, contentKey } from "./serve.mjs";

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    quality: { type: "string", default: "11" },
    prune: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
  },
});
const quality = Number(args.quality);
if (!Number.isInteger(quality) || quality < 0 || quality > 11) throw new Error(`--quality: 0-11, not ${args.quality}`);
const files = positionals.length
  ? positionals
  : ["web/pkg/webpeft_bg.wasm", "web/pkg-threads/webpeft_bg.wasm"].map((f) => join(ROOT, f)).filter((f) => existsSync(f));
if (files.length === 0) {
  console.error("wasm-sizes: no wasm files (build them first: bash scripts/build-web.sh)");
  process.exit(1);
}

const cache = COMPRESSED_CACHE;
mkdirSync(cache, { recursive: true });
const write = (path, bytes) => {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
};

const rows = [];
for (const file of files) {
  const bytes = readFileSync(file);
  const key = contentKey(bytes);
  const figuresPath = join(cache, `${key}.json`);
  let figures = {};
  try {
    figures = JSON.parse(readFileSync(figuresPath, "utf8"));
  } catch {}
  figures.raw = bytes.length;
  if (figures.gzip === undefined) {
    const gz = await compress(bytes, "gzip");
    figures.gzip = gz.length;
    write(join(cache, `${key}.gz`), gz);
  }
  figures.brotli ??= {};
  if (figures.brotli[quality] === undefined) {
    const br = await compress(bytes, "br", { quality });
    figures.brotli[quality] = br.length;
    const best = Math.min(...Object.values(figures.brotli));
    const brPath = join(cache, `${key}.br`);
    if (!existsSync(brPath) || br.length <= best) write(brPath, br);
  }
  write(figuresPath, JSON.stringify(figures));
  rows.push({ file: relative(ROOT, file) || file, key, raw: figures.raw, gzip: figures.gzip, brotli: figures.brotli[quality], quality });
}

if (args.prune) {
  const keep = new Set(rows.map((r) => r.key));
  for (const f of readdirSync(cache)) {
    if (!keep.has(f.split(".")[0])) rmSync(join(cache, f), { force: true });
  }
}

if (args.json) {
  console.log(JSON.stringify(rows, null, 2));
} else {
  const mb = (n) => `${(n / 1e6).toFixed(2)} MB`;
  for (const r of rows) {
    console.log(`${r.file}: ${mb(r.raw)} raw, ${mb(r.gzip)} gzip -9, ${mb(r.brotli)} brotli q${r.quality} (${r.raw} / ${r.gzip} / ${r.brotli} bytes)`);
  }
}
