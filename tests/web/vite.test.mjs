// The package as a user gets it: `npm pack` of web/, installed into a fresh Vite
// project (Vite from the npm registry), built with `vite build`, served, and used
// in Chromium: load the tiny Llama, train two LoRA steps on the CPU backend's
// thread pool (dist/threads/ copied to public/, as web/README.md says), export
// the adapter zip.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, writeFileSync, cpSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, startServer, launch, requireBuild, threadsBuild } from "./harness.mjs";

const run = promisify(execFile);
const VITE = "8.4.0"; // pinned: the test is about our package, not Vite's changes

test("npm pack -> fresh Vite project -> vite build -> trains in Chromium", { timeout: 10 * 60_000 }, async () => {
  requireBuild();
  const dir = mkdtempSync(join(tmpdir(), "webpeft-vite-"));
  let server, browser;
  try {
    // npm pack runs the package's prepack (the wasm and dist builds, incremental here).
    const { stdout } = await run("npm", ["pack", "--pack-destination", dir, "--json", "--loglevel=error"], { cwd: join(ROOT, "web"), maxBuffer: 64 << 20, timeout: 5 * 60_000 });
    const [packed] = JSON.parse(stdout.slice(stdout.indexOf("[")));
    const files = packed.files.map((f) => f.path);
    const want = ["dist/index.js", "dist/index.d.ts", "dist/types.d.ts", "dist/errors.d.ts", "dist/worker.js", "dist/webpeft_bg.wasm", "LICENSE", "THIRD_PARTY_NOTICES.md", "README.md", "package.json"];
    if (threadsBuild()) want.push("dist/threads/webpeft_bg.wasm", "dist/threads/webpeft.js");
    for (const f of want) assert.ok(files.includes(f), `npm pack contains ${f}: ${files.join(", ")}`);
    const notices = readFileSync(join(ROOT, "web/THIRD_PARTY_NOTICES.md"), "utf8");
    for (const c of ["burn-flex", "wgpu", "tokenizers", "wasm-bindgen"]) assert.match(notices, new RegExp(`^\\| ${c} \\|`, "m"), `notices list ${c}`);
    assert.match(notices, /Apache License/, "notices carry the licence texts");
    const tgz = join(dir, packed.filename);
    const app = join(dir, "app");
    cpSync(join(ROOT, "tests/web/vite-app"), app, { recursive: true });
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "vite-app", private: true, type: "module" }));
    await run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", `vite@${VITE}`, tgz], { cwd: app, timeout: 5 * 60_000 });
    if (threadsBuild()) cpSync(join(app, "node_modules/webpeft/dist/threads"), join(app, "public/webpeft-threads"), { recursive: true });
    await run(join(app, "node_modules/.bin/vite"), ["build"], { cwd: app });
    const dist = join(app, "dist");
    const assets = readdirSync(join(dist, "assets"));
    assert.ok(assets.some((f) => f.endsWith(".wasm")), `vite emitted the wasm core: ${assets}`);
    assert.ok(assets.some((f) => f.startsWith("worker")), `vite emitted the worker: ${assets}`);
    cpSync(join(ROOT, "tests/fixtures/tiny-llama"), join(dist, "model"), { recursive: true });
    server = await startServer(dist);
    browser = await launch();
    await browser.page.goto(server.url + "/index.html");
    const r = await browser.page.evaluate(() => window.run(["/model/config.json", "/model/tokenizer.json", "/model/model.safetensors"]));
    assert.equal(r.losses.length, 2);
    assert.equal(r.reason, "completed", JSON.stringify(r));
    assert.ok(r.losses.every(Number.isFinite), JSON.stringify(r));
    assert.ok(r.zip > 1000, `adapter zip of ${r.zip} bytes`);
    assert.equal(r.threads, threadsBuild() ? r.cores : 1, `the thread pool started: ${JSON.stringify(r)}`);
  } finally {
    await browser?.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
