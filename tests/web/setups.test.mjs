// The packed package (`npm pack` of web/) in the setups web/README.md documents, besides
// Vite (tests/web/vite.test.mjs): a plain `<script type="module">` page that imports
// dist/index.js by URL, and a webpack 5 build (webpack from the repository's devDependencies).
// Each loads the tiny Llama in Chromium, trains two LoRA steps on the CPU backend (its thread
// pool when the package has the threads build), generates and exports the adapter
// (tests/web/apps/run.js).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, startServer, launch, packWeb, requireBuild, threadsBuild } from "./harness.mjs";

const run = promisify(execFile);
const MODEL = ["/model/config.json", "/model/tokenizer.json", "/model/model.safetensors"];
let dir, tgz;

before(async () => {
  requireBuild();
  dir = mkdtempSync(join(tmpdir(), "webpeft-setups-"));
  // The dist as built (scripts/test-web.sh builds it first); vite.test.mjs runs prepack itself.
  ({ tgz } = await packWeb(dir, { scripts: false }));
});
after(() => dir && rmSync(dir, { recursive: true, force: true }));

/** A fresh app from tests/web/<name> with the tarball installed and run.js beside its entry. */
async function app(name) {
  const at = join(dir, name);
  cpSync(join(ROOT, "tests/web", name), at, { recursive: true });
  cpSync(join(ROOT, "tests/web/apps/run.js"), join(at, "run.js"));
  writeFileSync(join(at, "package.json"), JSON.stringify({ name, private: true, type: "module" }));
  // The package has no dependencies: the tarball alone, offline.
  await run("npm", ["install", "--no-audit", "--no-fund", "--offline", "--loglevel=error", tgz], { cwd: at, timeout: 2 * 60_000 });
  return at;
}

/** Serves `root` (with the tiny Llama under /model/), opens `page` and runs the app. */
async function trainIn(root, page) {
  cpSync(join(ROOT, "tests/fixtures/tiny-llama"), join(root, "model"), { recursive: true });
  const server = await startServer(root);
  const browser = await launch();
  try {
    await browser.page.goto(server.url + page);
    await browser.page.waitForFunction(() => typeof window.run === "function", null, { timeout: 30_000 });
    return await browser.page.evaluate((urls) => window.run(urls), MODEL);
  } finally {
    await browser.close();
    await server.close();
  }
}

function check(r) {
  assert.equal(r.modelType, "llama", JSON.stringify(r));
  assert.equal(r.losses.length, 2, JSON.stringify(r));
  assert.ok(r.losses.every(Number.isFinite), JSON.stringify(r));
  assert.equal(r.reason, "completed", JSON.stringify(r));
  assert.equal(typeof r.text, "string", JSON.stringify(r));
  assert.ok(r.zip > 1000, `adapter zip of ${r.zip} bytes`);
  assert.equal(r.threads, threadsBuild() ? r.cores : 1, `the thread pool: ${JSON.stringify(r)}`);
}

test("a plain <script type=module> page imports dist/index.js by URL and trains", { timeout: 5 * 60_000 }, async () => {
  const at = await app("script-app");
  check(await trainIn(at, "/index.html"));
});

test("webpack 5 bundles the package (worker and wasm as assets) and the app trains", { timeout: 8 * 60_000 }, async () => {
  const at = await app("webpack-app");
  const cli = join(ROOT, "node_modules/webpack-cli/bin/cli.js");
  try {
    await run(process.execPath, [cli, "--config", join(at, "webpack.config.js")], { cwd: at, maxBuffer: 16 << 20, timeout: 4 * 60_000 });
  } catch (e) {
    assert.fail(`webpack failed:\n${e.stdout}${e.stderr}`);
  }
  const out = join(at, "dist");
  const emitted = readdirSync(out);
  assert.ok(emitted.some((f) => f.endsWith(".wasm")), `webpack emitted the wasm core: ${emitted}`);
  cpSync(join(at, "index.html"), join(out, "index.html"));
  if (threadsBuild()) cpSync(join(at, "node_modules/webpeft/dist/threads"), join(out, "webpeft-threads"), { recursive: true });
  check(await trainIn(out, "/index.html"));
});

test("esbuild bundles the package; worker.js, the wasm and threads/ copied next to the bundle, the app trains", { timeout: 5 * 60_000 }, async () => {
  const at = await app("esbuild-app");
  const { build } = await import("esbuild");
  const out = join(at, "out");
  await build({ entryPoints: [join(at, "main.js")], bundle: true, format: "esm", outfile: join(out, "main.js"), logLevel: "error" });
  const pkg = join(at, "node_modules/webpeft/dist");
  for (const f of ["worker.js", "webpeft_bg.wasm"]) cpSync(join(pkg, f), join(out, f));
  if (threadsBuild()) cpSync(join(pkg, "threads"), join(out, "threads"), { recursive: true });
  cpSync(join(at, "index.html"), join(out, "index.html"));
  check(await trainIn(out, "/index.html"));
});
