// The browser's adapter zip import (web/src/worker.ts loadAdapterFiles) unzips with fflate
// in JavaScript before the Rust core sees the files (the `adapter` fuzz target covers that
// part). This is a plain mutation check of the JS part, not coverage-guided: random byte
// changes to a real adapter zip (webpeft's exportAdapter layout), and zip headers declaring
// sizes of up to 4 GB. Every outcome must be the files or a thrown Error (which worker.ts
// reports as a `format` WebPeftError), in under a second, without memory growing.
//   node scripts/fuzz-zip.mjs SECONDS        (scripts/fuzz.sh runs it as the `zip` target)
import { zipSync, unzipSync, strToU8 } from "fflate";
import { readFileSync } from "node:fs";

const seconds = Number(process.argv[2] || 60);
const dir = new URL("../tests/fixtures/peft/llama-lora/", import.meta.url);
const good = zipSync({
  "adapter_config.json": readFileSync(new URL("adapter_config.json", dir)),
  "adapter_model.safetensors": readFileSync(new URL("adapter_model.safetensors", dir)),
  "webpeft.json": strToU8('{"task":"causal-lm"}'),
  "README.md": strToU8("# adapter\n"),
});
let failures = 0;
const fail = (msg) => { failures++; console.error("FAIL:", msg); };

// Declared (uncompressed) sizes patched in the local and central headers.
for (const size of [0xfffffff0, 0x7fffffff, 1 << 30, 0]) {
  const b = new Uint8Array(good);
  const dv = new DataView(b.buffer);
  for (let i = 0; i + 4 <= b.length; i++) {
    if (dv.getUint32(i, true) === 0x04034b50) dv.setUint32(i + 22, size, true);
    if (dv.getUint32(i, true) === 0x02014b50) dv.setUint32(i + 24, size, true);
  }
  const t = Date.now();
  try { unzipSync(b); } catch (e) { if (!(e instanceof Error)) fail(`size ${size}: threw a non-Error ${e}`); }
  if (Date.now() - t > 1000) fail(`size ${size}: took ${Date.now() - t} ms`);
}

let seed = 12345;
const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
const outcomes = {};
const rss0 = process.memoryUsage().rss;
const t0 = Date.now();
let runs = 0;
while (Date.now() - t0 < seconds * 1000) {
  const b = new Uint8Array(good);
  for (let k = 0, n = 1 + rnd() * 8; k < n; k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
  const cut = rnd() < 0.1 ? Math.floor(rnd() * b.length) : b.length;
  const t = Date.now();
  let kind;
  try {
    unzipSync(b.subarray(0, cut));
    kind = "unzipped";
  } catch (e) {
    if (!(e instanceof Error)) fail(`run ${runs}: threw a non-Error ${e}`);
    kind = e.message.replace(/[0-9]+/g, "N");
  }
  outcomes[kind] = (outcomes[kind] || 0) + 1;
  if (Date.now() - t > 1000) fail(`run ${runs}: took ${Date.now() - t} ms`);
  runs++;
}
const grown = Math.round((process.memoryUsage().rss - rss0) / 1e6);
if (grown > 512) fail(`memory grew by ${grown} MB`);
console.log(JSON.stringify({ seconds, runs, outcomes, rss_growth_mb: grown, failures }));
process.exit(failures ? 1 : 0);
