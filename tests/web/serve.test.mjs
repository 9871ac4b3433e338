// The static server (scripts/serve.mjs) keeps to its root. Requests go out raw
// (node:http with the path as written), because fetch() and the URL parser
// normalise `/../` away before a server could see it; the encoded forms
// (`%2e%2e/`, `..%2f`) reach the server and must be refused there. The page's
// files go out brotli- or gzip-compressed when asked, and as they are when not.
// Needs neither the wasm nor the package.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { startServer, pickEncoding, contentKey } from "../../scripts/serve.mjs";
import { rawGet } from "./harness.mjs";

const SECRET = "webpeft-serve-test-secret";

/** GET `path` exactly as given; resolves { status, body } (body as text). */
const rawText = async (port, path) => {
  const r = await rawGet(port, path);
  return { status: r.status, body: r.body.toString("utf8") };
};

test("static server: no path outside its root, raw or percent-encoded, and no dot-folders", async () => {
  // <tmp>/secret.txt sits next to the served root <tmp>/root/.
  const dir = mkdtempSync(join(tmpdir(), "webpeft-serve-"));
  const root = join(dir, "root");
  mkdirSync(join(root, "sub"), { recursive: true });
  mkdirSync(join(root, ".git"));
  writeFileSync(join(root, "sub/ok.txt"), "served");
  writeFileSync(join(root, ".git/config"), SECRET);
  writeFileSync(join(dir, "secret.txt"), SECRET);
  const server = await startServer({ root });
  try {
    // The server does serve files under its root, so a refusal below means something.
    const ok = await rawText(server.port, "/sub/ok.txt");
    assert.equal(ok.status, 200);
    assert.equal(ok.body, "served");

    const escapes = [
      "/../secret.txt",
      "/sub/../../secret.txt",
      "/../../../../../../../../etc/passwd",
      "/%2e%2e/secret.txt",
      "/%2E%2E/secret.txt",
      "/.%2e/secret.txt",
      "/%2e%2e%2fsecret.txt",
      "/..%2fsecret.txt",
      "/sub/..%2f..%2fsecret.txt",
      "/sub%2f..%2f..%2fsecret.txt",
      "/..%2f..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
      "/..\\secret.txt",
      "/..%5csecret.txt",
      "/%252e%252e/secret.txt",
      "/%2e%2e%252fsecret.txt",
      "//../secret.txt",
      "http://127.0.0.1/../secret.txt",
      "/.git/config",
      "/%2egit/config",
      "/sub/..%2f.git%2fconfig",
    ];
    for (const path of escapes) {
      const r = await rawText(server.port, path);
      assert.ok(!r.body.includes(SECRET) && !r.body.includes("root:x:0:0"), `${path}: served a file it must not (status ${r.status})`);
      assert.ok([400, 403, 404].includes(r.status), `${path}: status ${r.status}`);
    }
    // Where the decoded path climbs out of the root, the server itself must
    // say no (403), not merely fail to find the file.
    for (const path of ["/..%2fsecret.txt", "/sub/..%2f..%2fsecret.txt", "/%2e%2e%2fsecret.txt", "/%2egit/config"]) {
      assert.equal((await rawGet(server.port, path)).status, 403, path);
    }
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A valid wasm module of about `size` bytes: the header and one compressible custom section. */
function wasmModule(size, seed) {
  const payload = Buffer.alloc(size);
  for (let i = 0; i < size; i++) payload[i] = (i * 7 + (i >> 9) * seed) & 0xff;
  const name = Buffer.from("pad");
  const body = Buffer.concat([Buffer.from([name.length]), name, payload]);
  const leb = [];
  for (let n = body.length; ; ) {
    const b = n & 0x7f;
    n >>>= 7;
    if (n === 0) { leb.push(b); break; }
    leb.push(b | 0x80);
  }
  return Buffer.concat([Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 0]), Buffer.from(leb), body]);
}

test("Accept-Encoding: brotli first, q-values and * honoured", () => {
  assert.equal(pickEncoding(undefined), null);
  assert.equal(pickEncoding(""), null);
  assert.equal(pickEncoding("identity"), null);
  assert.equal(pickEncoding("gzip, deflate, br, zstd"), "br");
  assert.equal(pickEncoding("gzip, deflate"), "gzip");
  assert.equal(pickEncoding("br;q=0, gzip;q=0.5"), "gzip");
  assert.equal(pickEncoding("BR ; Q=0.1"), "br");
  assert.equal(pickEncoding("gzip;q=0, br;q=0"), null);
  assert.equal(pickEncoding("*"), "br");
  assert.equal(pickEncoding("*;q=0, gzip"), "gzip");
});

test("static server: the wasm goes out compressed when asked and as it is when not; decoded bytes equal the file", async () => {
  const dir = mkdtempSync(join(tmpdir(), "webpeft-serve-"));
  const root = join(dir, "root");
  const cacheDir = join(dir, "cache");
  mkdirSync(join(root, "pkg"), { recursive: true });
  // Large enough for the on-disk cache (>= 256 KiB), and a small script (memory cache).
  const wasm = wasmModule(600_000, 3);
  const js = Buffer.from("export const x = " + JSON.stringify("webpeft ".repeat(400)) + ";\n");
  const model = Buffer.from(JSON.stringify({ vocab: "abc ".repeat(2000) }));
  writeFileSync(join(root, "pkg/core_bg.wasm"), wasm);
  writeFileSync(join(root, "pkg/glue.js"), js);
  writeFileSync(join(root, "pkg/tokenizer.json"), model);
  await WebAssembly.compile(wasm); // the fixture is a real module
  const server = await startServer({ root, cacheDir });
  try {
    // Not asked (no header, or identity only): the file as it is.
    for (const headers of [{}, { "accept-encoding": "identity" }, { "accept-encoding": "br;q=0, gzip;q=0" }]) {
      const r = await rawGet(server.port, "/pkg/core_bg.wasm", headers);
      assert.equal(r.status, 200);
      assert.equal(r.headers["content-encoding"], undefined, JSON.stringify(headers));
      assert.equal(r.headers["content-type"], "application/wasm");
      assert.equal(Number(r.headers["content-length"]), wasm.length);
      assert.ok(r.body.equals(wasm), "identity body equals the file");
    }
    // Asked: brotli first, gzip when brotli is refused or not offered.
    for (const [accept, encoding, decode] of [
      ["gzip, deflate, br, zstd", "br", brotliDecompressSync],
      ["br", "br", brotliDecompressSync],
      ["gzip, deflate", "gzip", gunzipSync],
      ["br;q=0, gzip", "gzip", gunzipSync],
    ]) {
      for (const path of ["/pkg/core_bg.wasm", "/pkg/glue.js"]) {
        const file = path.endsWith(".wasm") ? wasm : js;
        const r = await rawGet(server.port, path, { "accept-encoding": accept });
        assert.equal(r.status, 200);
        assert.equal(r.headers["content-encoding"], encoding, `${path} with ${accept}`);
        assert.equal(r.headers["vary"], "Accept-Encoding");
        assert.ok(r.headers["content-type"].startsWith(path.endsWith(".wasm") ? "application/wasm" : "text/javascript"));
        assert.equal(Number(r.headers["content-length"]), r.body.length);
        assert.ok(r.body.length < file.length / 2, `${path} ${encoding}: ${r.body.length} of ${file.length} bytes`);
        assert.ok(decode(r.body).equals(file), `${path} ${encoding}: decoded bytes equal the file`);
      }
    }
    await WebAssembly.compile(brotliDecompressSync((await rawGet(server.port, "/pkg/core_bg.wasm", { "accept-encoding": "br" })).body));
    // The large file's compressed forms are cached on disk by content hash.
    const key = contentKey(wasm);
    assert.deepEqual(readdirSync(cacheDir).sort(), [`${key}.br`, `${key}.gz`]);
    assert.ok(brotliDecompressSync(readFileSync(join(cacheDir, `${key}.br`))).equals(wasm));
    // A rebuilt file (new content, same size) is served anew, not from the cache.
    const wasm2 = wasmModule(600_000, 5);
    assert.equal(wasm2.length, wasm.length);
    writeFileSync(join(root, "pkg/core_bg.wasm"), wasm2);
    const r2 = await rawGet(server.port, "/pkg/core_bg.wasm", { "accept-encoding": "br" });
    assert.ok(brotliDecompressSync(r2.body).equals(wasm2), "the rebuilt wasm, not the cached one");
    // A Range request, and data files, are never encoded.
    const ranged = await rawGet(server.port, "/pkg/core_bg.wasm", { "accept-encoding": "br", range: "bytes=0-7" });
    assert.equal(ranged.status, 206);
    assert.equal(ranged.headers["content-encoding"], undefined);
    assert.ok(ranged.body.equals(wasm2.subarray(0, 8)));
    const data = await rawGet(server.port, "/pkg/tokenizer.json", { "accept-encoding": "br, gzip" });
    assert.equal(data.headers["content-encoding"], undefined);
    assert.ok(data.body.equals(model));
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
