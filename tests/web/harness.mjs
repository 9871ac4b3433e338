// Shared pieces of the browser tests: a static server for the repository root,
// headless Chromium through playwright-core, safetensors and zip readers, and
// the native CLI. Plain node (no test framework beyond node:test).
import { existsSync, promises as fs } from "node:fs";
import { homedir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { execFile } from "node:child_process";
import { request } from "node:http";
import { promisify } from "node:util";
import { unzipSync } from "fflate";
import { startServer as serve } from "../../scripts/serve.mjs";
import { launch } from "../../scripts/chromium.mjs";

export { CHROMIUM, CHROMIUM_ARGS, launch } from "../../scripts/chromium.mjs";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const OUT = join(ROOT, "tests/out");
export const WEBPEFT_BIN =
  process.env.WEBPEFT_BIN ||
  join(process.env.CARGO_TARGET_DIR || join(homedir(), ".cache/webpeft/target"), `${process.env.WEBPEFT_PROFILE || "ci"}/webpeft`);
export const PAGE = "/tests/web/page/index.html";

/** Serves `root` on 127.0.0.1 (a free port) with COOP/COEP (unless `isolated` is false), correct MIME types, no caching: `npm start`'s server. */
export const startServer = (root = ROOT, { isolated = true } = {}) => serve({ root, isolated });

/**
 * Starts the server and Chromium and opens the test page. `dist`: another build of the
 * package (URL path), default $WEBPEFT_TEST_DIST (e.g. /tests/out/mock-dist to dry-run the
 * harness against the mock core), else /web/dist. `isolated: false` serves the page without
 * COOP/COEP (not cross-origin isolated).
 */
export async function openTestPage({ dist = process.env.WEBPEFT_TEST_DIST, isolated = true, ...opts } = {}) {
  const server = await startServer(ROOT, { isolated });
  const browser = await launch(opts);
  await browser.page.goto(server.url + PAGE + (dist ? `?dist=${encodeURIComponent(dist)}` : ""));
  await browser.page.waitForFunction(() => window.wpReady === true || window.wpLoadError, null, { timeout: 60_000 });
  const loadError = await browser.page.evaluate(() => window.wpLoadError && String(window.wpLoadError));
  if (loadError) throw new Error(`test page failed to load: ${loadError}`);
  return {
    ...browser,
    server,
    close: async () => {
      await browser.close();
      await server.close();
    },
  };
}

/**
 * GET `path` exactly as written (node:http: no `/../` normalisation, no decompression)
 * with `headers`; resolves { status, headers, body: Buffer }.
 */
export function rawGet(port, path, headers = {}) {
  return new Promise((ok, fail) => {
    const req = request({ host: "127.0.0.1", port, path, method: "GET", headers }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => ok({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", fail);
    req.end();
  });
}

/** URLs of a model directory's files, as the page fetches them. */
export function modelUrls(dir, files = ["config.json", "tokenizer.json", "model.safetensors"]) {
  return files.map((f) => `/${dir}/${f}`);
}

/** Parses a safetensors file: { name: { dtype, shape, data } }: F32 as a Float32Array, I64 as numbers. */
export function readSafetensors(buf) {
  const bytes = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  if (8 + n > bytes.length) throw new Error(`safetensors header length ${n} beyond the file (${bytes.length} bytes)`);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    if (t.dtype !== "F32" && t.dtype !== "I64") throw new Error(`${name}: dtype ${t.dtype}, only F32 and I64 are read here`);
    const [a, b] = t.data_offsets;
    const start = 8 + n + a;
    // A copy, 4-byte aligned (Buffer#slice would be a view into a shared pool).
    const copy = new Uint8Array(b - a);
    copy.set(bytes.subarray(start, start + (b - a)));
    const data = t.dtype === "F32" ? new Float32Array(copy.buffer) : Array.from(new BigInt64Array(copy.buffer), Number);
    out[name] = { dtype: t.dtype, shape: t.shape, data };
  }
  return out;
}

/** Unzips into `dir`; returns the file names. */
export async function unzipTo(zipBytes, dir) {
  const files = unzipSync(new Uint8Array(zipBytes));
  await fs.mkdir(dir, { recursive: true });
  for (const [name, data] of Object.entries(files)) {
    if (name.includes("..") || name.startsWith("/")) throw new Error(`bad zip entry ${name}`);
    await fs.writeFile(join(dir, name), data);
  }
  return Object.keys(files).sort();
}

const execFileP = promisify(execFile);

/** Runs the native CLI's forward pass; returns the logits as a Float32Array. */
export async function cliForward(modelDir, adapterDir, tokens, outFile) {
  const args = ["forward", join(ROOT, modelDir), "--tokens", tokens.join(","), "--out", outFile];
  if (adapterDir) args.push("--adapter", adapterDir);
  await execFileP(WEBPEFT_BIN, args, { cwd: ROOT, maxBuffer: 1 << 24 });
  return readSafetensors(await fs.readFile(outFile)).logits.data;
}

export function maxAbsDiff(a, b) {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export const mean = (xs) => xs.reduce((s, x) => s + x, 0) / xs.length;

export async function outDir(name) {
  const d = join(OUT, name);
  await fs.rm(d, { recursive: true, force: true });
  await fs.mkdir(d, { recursive: true });
  return d;
}

/** Saves the adapter the page offers as a download (an <a download> click). */
export async function downloadAdapter(page, file) {
  const [download] = await Promise.all([
    page.waitForEvent("download", { timeout: 120_000 }),
    page.evaluate(() => window.wp.downloadAdapter()),
  ]);
  await download.saveAs(file);
  return file;
}

/** Builds the package against the mock core (tests/web/mock) into tests/out/mock-dist; returns its URL path. */
export async function buildMock() {
  const pkg = join(OUT, "mock-pkg");
  await fs.mkdir(pkg, { recursive: true });
  await fs.copyFile(join(ROOT, "tests/web/mock/webpeft.js"), join(pkg, "webpeft.js"));
  await fs.writeFile(join(pkg, "webpeft_bg.wasm"), new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  await execFileP(process.execPath, [join(ROOT, "web/build.mjs"), "--dev", "--pkg", pkg, "--out", join(OUT, "mock-dist")], { cwd: ROOT });
  return "/tests/out/mock-dist";
}

/** True when the real package is built (web/dist with the wasm). */
export function realBuild() {
  return existsSync(join(ROOT, "web/dist/index.js")) && existsSync(join(ROOT, "web/dist/webpeft_bg.wasm"));
}

/**
 * True when web/dist has the CPU threads build (scripts/build-web.sh skips it, with a
 * warning, where the rust-src component cannot be installed). Under CI=true its absence
 * throws, failing the calling test instead of skipping it or expecting one thread,
 * unless WEBPEFT_ALLOW_NO_THREADS=1.
 */
export function threadsBuild() {
  const built = existsSync(join(ROOT, "web/dist/threads/webpeft.js"));
  if (!built && /^(true|1)$/i.test(process.env.CI ?? "") && process.env.WEBPEFT_ALLOW_NO_THREADS !== "1") {
    throw new Error("web/dist has no threads build (web/dist/threads/webpeft.js: scripts/build-web.sh had no rust-src); under CI=true that fails, WEBPEFT_ALLOW_NO_THREADS=1 accepts it");
  }
  return built;
}

/** Fails the calling test with a clear message when the package is not built. */
export function requireBuild() {
  if (!realBuild() && !process.env.WEBPEFT_TEST_DIST) {
    throw new Error("web/dist is not built (web/dist/index.js, web/dist/webpeft_bg.wasm): run bash scripts/test-web.sh, or scripts/build-web.sh then npm run build:web");
  }
}

/**
 * `npm pack` of web/ into `dir`, as a user's install gets it: `{ tgz, files }` (the tarball's
 * path and the paths it holds). With `scripts` (default) the package's prepack runs (the wasm
 * and dist builds, incremental here); `scripts: false` packs web/dist as it is built.
 */
export async function packWeb(dir, { scripts = true } = {}) {
  const args = ["pack", "--pack-destination", dir, "--json", "--loglevel=error", ...(scripts ? [] : ["--ignore-scripts"])];
  const { stdout } = await promisify(execFile)("npm", args, { cwd: join(ROOT, "web"), maxBuffer: 64 << 20, timeout: 5 * 60_000 });
  const [packed] = JSON.parse(stdout.slice(stdout.indexOf("[")));
  return { tgz: join(dir, packed.filename), files: packed.files.map((f) => f.path) };
}

/**
 * Runs `f(tuner, arg)` in the page on its current Tuner (`window.wpTuner()`); returns
 * `{ value }` (a Float32Array result as a plain array) or `{ error: { kind, message, name } }`.
 */
export function inPageOf(page) {
  return (f, arg) =>
    page.evaluate(
      async ([src, a]) => {
        try {
          const v = await (0, eval)(`(${src})`)(window.wpTuner(), a);
          return { value: v instanceof Float32Array ? Array.from(v) : v };
        } catch (e) {
          return { error: { kind: e?.kind, message: String(e?.message ?? e), name: e?.name } };
        }
      },
      [f.toString(), arg],
    );
}

/** Calls window.wp[name](...args) in the page. */
export function helper(page) {
  return (name, ...args) => page.evaluate(([n, a]) => window.wp[n](...a), [name, args]);
}

/** Step losses from a run's events. */
export const stepLosses = (events) => events.filter((e) => e.event === "step").map((e) => e.loss);

/**
 * The adapter round trip the browser tests share: download the trained adapter
 * from the page as a zip, unzip it, run the native CLI's forward pass with it,
 * and compare with the browser's logits. Returns { maxDiff, files, dir }.
 */
export async function adapterParity(page, { name, model, tokens }) {
  const dir = await outDir(name);
  const zip = join(dir, "adapter.zip");
  await downloadAdapter(page, zip);
  const adapterDir = join(dir, "adapter");
  const files = await unzipTo(await fs.readFile(zip), adapterDir);
  const browser = await page.evaluate((t) => window.wp.forward(t), tokens);
  if (browser.error) throw new Error(`browser forward: ${JSON.stringify(browser.error)}`);
  const native = await cliForward(model, adapterDir, tokens, join(dir, "native.safetensors"));
  return { maxDiff: maxAbsDiff(Float32Array.from(browser), native), files, dir, browser, native };
}
