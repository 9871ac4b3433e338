// Builds the webpeft npm package into web/dist/:
//   index.js        the main-thread API (ESM, fflate bundled)
//   worker.js       the module worker, with the wasm-bindgen glue bundled
//   webpeft_bg.wasm the core (copied from web/pkg/, built by scripts/build-web.sh)
//   threads/        the CPU-only threads build of the core (web/pkg-threads/, copied
//                   as it is: its worker pool imports the glue by URL)
//   *.d.ts          declarations (tsc --emitDeclarationOnly); the types of the core's options,
//                   events, info, plans and errors come from src/core-types.ts, which
//                   `cargo test` generates from the Rust definitions (crate/src/api.rs) and
//                   checks: the package is type-checked against it, so a drift fails here
// and, into web/ itself (the package root, git-ignored): LICENSE (the repository's)
// and THIRD_PARTY_NOTICES.md (the crates compiled into the wasm, with their licence
// texts; scripts/third-party-notices.mjs).
// Usage: node web/build.mjs [--dev] [--strict] [--pkg DIR] [--out DIR]
//   --dev: no minification; --pkg/--out: another wasm-bindgen output and dist folder (the
//   tests build the worker against a mock core this way). The worker is type-checked against
//   web/pkg/webpeft.d.ts (the real bindings): a disagreement fails the build (--strict, which
//   prepack passes, is kept for compatibility and is the default).
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { notices } from "../scripts/third-party-notices.mjs";

const web = dirname(fileURLToPath(import.meta.url));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 && process.argv[i + 1] ? resolve(process.argv[i + 1]) : fallback;
};
const pkg = arg("--pkg", join(web, "pkg"));
// The threads build goes with the default pkg only (not with --pkg, e.g. the mock core).
const threadsPkg = process.argv.includes("--pkg") ? null : join(web, "pkg-threads");
const threads = threadsPkg !== null && existsSync(join(threadsPkg, "webpeft.js"));
const dist = arg("--out", join(web, "dist"));
const dev = process.argv.includes("--dev");
const declarations = dist === join(web, "dist");
const require = createRequire(import.meta.url);
const tsc = join(dirname(require.resolve("typescript/package.json")), "bin", "tsc");

for (const f of ["webpeft.js", "webpeft_bg.wasm"]) {
  if (!existsSync(join(pkg, f))) {
    console.error(`build: ${join(pkg, f)} is missing; build the wasm first (bash scripts/build-web.sh)`);
    process.exit(1);
  }
}

const t0 = Date.now();
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

const wasmGlue = {
  name: "webpeft-wasm",
  setup(b) {
    b.onResolve({ filter: /^webpeft-wasm$/ }, () => ({ path: join(pkg, "webpeft.js") }));
  },
};
const common = {
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  sourcemap: true,
  minify: !dev,
  legalComments: "linked",
  logLevel: "warning",
};
await build({ ...common, entryPoints: [join(web, "src/index.ts")], outfile: join(dist, "index.js") });
await build({
  ...common,
  entryPoints: [join(web, "src/worker.ts")],
  outfile: join(dist, "worker.js"),
  plugins: [wasmGlue],
  define: { __WEBPEFT_THREADS__: String(threads) },
});
copyFileSync(join(pkg, "webpeft_bg.wasm"), join(dist, "webpeft_bg.wasm"));
if (threads) {
  cpSync(threadsPkg, join(dist, "threads"), { recursive: true, filter: (f) => !f.endsWith(".d.ts") });
} else if (threadsPkg !== null) {
  console.warn(`build: ${threadsPkg} is missing: this build's CPU backend runs on one thread (scripts/build-web.sh builds it)`);
}

const run = (...args) => {
  try {
    execFileSync(process.execPath, [tsc, ...args], { stdio: "inherit", cwd: web });
  } catch {
    throw new Error(`tsc ${args.join(" ")} failed`);
  }
};
if (declarations) {
  run("-p", "tsconfig.json"); // dist/*.d.ts
  run("-p", "tsconfig.worker.json"); // the worker against src/wasm.d.ts
  // ... and against the real bindings: a drift is reported (an error with --strict).
  if (existsSync(join(pkg, "webpeft.d.ts"))) {
    try {
      run("-p", "tsconfig.pkg.json");
    } catch {
      console.error("build: web/src/worker.ts disagrees with web/pkg/webpeft.d.ts (above): the Rust bindings and src/wasm.d.ts have drifted");
      process.exit(1);
    }
  }
}

if (declarations) {
  copyFileSync(join(web, "..", "LICENSE"), join(web, "LICENSE"));
  const { md, crates } = notices();
  writeFileSync(join(web, "THIRD_PARTY_NOTICES.md"), md);
  console.log(`build: THIRD_PARTY_NOTICES.md lists the ${crates.length} crates compiled into the wasm`);
}

const size = (f) => `${(statSync(join(dist, f)).size / 1024).toFixed(0)} KiB`;
console.log(
  `build: ${dist} in ${((Date.now() - t0) / 1000).toFixed(1)} s: index.js ${size("index.js")}, worker.js ${size("worker.js")}, webpeft_bg.wasm ${size("webpeft_bg.wasm")}` +
    (threads ? `, threads/webpeft_bg.wasm ${size("threads/webpeft_bg.wasm")}` : ""),
);
