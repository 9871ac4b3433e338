// The package as a user gets it: `npm pack` of web/, installed into a fresh Vite
// project (Vite from the npm registry, tests/web/vite-app with its vite.config.js),
// then used in Chromium from `vite build`'s output and from the `vite` dev server:
// load the tiny Llama, train two LoRA steps on the CPU backend's thread pool
// (dist/threads/ copied to public/, as web/README.md says), generate, export the
// adapter zip (tests/web/apps/run.js).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createServer } from "node:net";
import { promisify } from "node:util";
import { mkdtempSync, writeFileSync, cpSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, startServer, launch, packWeb, requireBuild, threadsBuild } from "./harness.mjs";

const run = promisify(execFile);
const VITE = "8.4.0"; // pinned: the test is about our package, not Vite's changes
const MODEL = ["/model/config.json", "/model/tokenizer.json", "/model/model.safetensors"];
let dir, app;

before(async () => {
  requireBuild();
  dir = mkdtempSync(join(tmpdir(), "webpeft-vite-"));
  // npm pack runs the package's prepack (the wasm and dist builds, incremental here).
  const { tgz, files } = await packWeb(dir);
  const want = ["dist/index.js", "dist/index.d.ts", "dist/types.d.ts", "dist/core-types.d.ts", "dist/errors.d.ts", "dist/worker.js", "dist/webpeft_bg.wasm", "LICENSE", "THIRD_PARTY_NOTICES.md", "README.md", "package.json"];
  if (threadsBuild()) want.push("dist/threads/webpeft_bg.wasm", "dist/threads/webpeft.js");
  for (const f of want) assert.ok(files.includes(f), `npm pack contains ${f}: ${files.join(", ")}`);
  const notices = readFileSync(join(ROOT, "web/THIRD_PARTY_NOTICES.md"), "utf8");
  for (const c of ["burn-flex", "wgpu", "tokenizers", "wasm-bindgen"]) assert.match(notices, new RegExp(`^\\| ${c} \\|`, "m"), `notices list ${c}`);
  assert.match(notices, /Apache License/, "notices carry the licence texts");
  app = join(dir, "app");
  cpSync(join(ROOT, "tests/web/vite-app"), app, { recursive: true });
  cpSync(join(ROOT, "tests/web/apps/run.js"), join(app, "run.js"));
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "vite-app", private: true, type: "module" }));
  await run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", `vite@${VITE}`, tgz], { cwd: app, timeout: 5 * 60_000 });
  if (threadsBuild()) cpSync(join(app, "node_modules/webpeft/dist/threads"), join(app, "public/webpeft-threads"), { recursive: true });
  cpSync(join(ROOT, "tests/fixtures/tiny-llama"), join(app, "public/model"), { recursive: true });
});
after(() => dir && rmSync(dir, { recursive: true, force: true }));

async function trainAt(url) {
  const browser = await launch();
  try {
    await browser.page.goto(url);
    await browser.page.waitForFunction(() => typeof window.run === "function", null, { timeout: 60_000 });
    return await browser.page.evaluate((urls) => window.run(urls), MODEL);
  } finally {
    await browser.close();
  }
}

function check(r) {
  assert.equal(r.losses.length, 2, JSON.stringify(r));
  assert.equal(r.reason, "completed", JSON.stringify(r));
  assert.ok(r.losses.every(Number.isFinite), JSON.stringify(r));
  assert.equal(typeof r.text, "string", JSON.stringify(r));
  assert.ok(r.zip > 1000, `adapter zip of ${r.zip} bytes`);
  assert.equal(r.threads, threadsBuild() ? r.cores : 1, `the thread pool started: ${JSON.stringify(r)}`);
}

test("npm pack -> fresh Vite project -> vite build -> trains in Chromium", { timeout: 10 * 60_000 }, async () => {
  await run(join(app, "node_modules/.bin/vite"), ["build"], { cwd: app });
  const dist = join(app, "dist");
  const assets = readdirSync(join(dist, "assets"));
  assert.ok(assets.some((f) => f.endsWith(".wasm")), `vite emitted the wasm core: ${assets}`);
  assert.ok(assets.some((f) => f.startsWith("worker")), `vite emitted the worker: ${assets}`);
  const server = await startServer(dist);
  try {
    check(await trainAt(server.url + "/index.html"));
  } finally {
    await server.close();
  }
});

const freePort = () =>
  new Promise((resolve, reject) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });

test("the same app under the Vite dev server trains in Chromium", { timeout: 5 * 60_000 }, async () => {
  const port = await freePort();
  const dev = spawn(join(app, "node_modules/.bin/vite"), ["--host", "127.0.0.1", "--port", String(port), "--strictPort"], { cwd: app, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  dev.stdout.on("data", (d) => (log += d));
  dev.stderr.on("data", (d) => (log += d));
  try {
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (dev.exitCode !== null) assert.fail(`vite exited (${dev.exitCode}):\n${log}`);
      if (await fetch(url + "/index.html").then((r) => r.ok, () => false)) break;
      if (Date.now() > deadline) assert.fail(`vite dev did not answer on ${url}:\n${log}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    check(await trainAt(url + "/index.html"));
  } finally {
    dev.kill();
  }
});
