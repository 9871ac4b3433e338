// Download size of the built package (issue #12): the main wasm stays within its
// gzip budget, and the static server of `npm start` sends the real wasm brotli- or
// gzip-compressed when asked, as it is when not, with the file's bytes either way.
// Needs the package (web/dist, scripts/test-web.sh builds it); no browser.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { brotliDecompressSync, gunzipSync, gzipSync } from "node:zlib";
import { ROOT, startServer, rawGet } from "./harness.mjs";

/**
 * The main wasm's budget, gzip -9 (README "Download size"): 4.30 MB measured with the
 * wasm-release profile, 4.40 MB once issue #11's quantized base (block kernels and parts),
 * gradient checkpointing, the GGUF LoRA export and the base files' sha256 were in, 4.47 MB with
 * issue #10's Phi-3 and ModernBERT families and issue #13's GPU job (its train.py and README are
 * in the core, which the CLI shares), 4.59 MB with issue #14's PRV accountant (rustfft's planner),
 * then 4.12 MB with opt-level "z" for the crates off the CPU backend's hot path, and 3.91 MB with
 * one codegen unit for those at "z". The budget is issue #12's goal, 4,000,000 bytes: a change
 * that grows the wasm past it fails here (the release profile gave 5.58 MB).
 */
const GZIP_BUDGET = 4_000_000;
const WASM = "/web/dist/webpeft_bg.wasm";

/** Whether a wasm module still has its `name` section (wasm-opt drops it: WEBPEFT_WASM_OPT=0 keeps it). */
function hasNameSection(b) {
  let i = 8;
  const leb = () => {
    let r = 0;
    for (let s = 0; ; s += 7) {
      const x = b[i++];
      r += (x & 0x7f) * 2 ** s;
      if (x < 0x80) return r;
    }
  };
  while (i < b.length) {
    const id = b[i++];
    const size = leb();
    const end = i + size;
    if (id === 0) {
      const n = leb();
      if (b.subarray(i, i + n).toString() === "name") return true;
    }
    i = end;
  }
  return false;
}

test("the main wasm is within its gzip budget", (t) => {
  const wasm = readFileSync(join(ROOT, WASM));
  if (hasNameSection(wasm)) {
    t.skip("web/dist holds an unoptimised wasm (WEBPEFT_WASM_OPT=0): the budget is for wasm-opt's output");
    return;
  }
  const gz = gzipSync(wasm, { level: 9 }).length;
  assert.ok(gz <= GZIP_BUDGET, `main wasm: ${gz} bytes gzip -9, over the ${GZIP_BUDGET}-byte budget (raw ${wasm.length})`);
});

test("npm start's server sends the real wasm compressed when asked, as it is when not", async () => {
  const wasm = readFileSync(join(ROOT, WASM));
  const server = await startServer();
  try {
    const plain = await rawGet(server.port, WASM, {});
    assert.equal(plain.status, 200);
    assert.equal(plain.headers["content-encoding"], undefined);
    assert.equal(plain.headers["content-type"], "application/wasm");
    assert.ok(plain.body.equals(wasm), "uncompressed body equals the file");
    for (const [accept, encoding, decode] of [
      ["gzip, deflate, br, zstd", "br", brotliDecompressSync], // what Chromium sends
      ["gzip, deflate", "gzip", gunzipSync],
    ]) {
      const r = await rawGet(server.port, WASM, { "accept-encoding": accept });
      assert.equal(r.status, 200);
      assert.equal(r.headers["content-encoding"], encoding);
      assert.equal(r.headers["content-type"], "application/wasm");
      assert.ok(r.body.length < wasm.length / 2, `${encoding}: ${r.body.length} of ${wasm.length} bytes`);
      assert.ok(decode(r.body).equals(wasm), `${encoding}: decoded bytes equal the file`);
    }
  } finally {
    await server.close();
  }
});
