// The package's TypeScript declarations as a user's tsc sees them: `npm pack` of web/
// (the dist as built), installed into a fresh project, and `tsc --noEmit` on a small
// program (tests/web/types-app/main.ts) under moduleResolution bundler, node16 and
// nodenext, with skipLibCheck off so that the package's own .d.ts files are checked
// (relative imports without a `.js` extension fail under node16/nodenext).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, packWeb, requireBuild } from "./harness.mjs";

const run = promisify(execFile);
const TSC = join(ROOT, "node_modules/typescript/bin/tsc");

const RESOLUTIONS = [
  { name: "bundler", module: "esnext", moduleResolution: "bundler" },
  { name: "node16", module: "node16", moduleResolution: "node16" },
  { name: "nodenext", module: "nodenext", moduleResolution: "nodenext" },
];

test("the packed declarations type-check under moduleResolution bundler, node16 and nodenext", { timeout: 5 * 60_000 }, async (t) => {
  requireBuild();
  const dir = mkdtempSync(join(tmpdir(), "webpeft-types-"));
  try {
    const { tgz, files } = await packWeb(dir, { scripts: false });
    for (const f of ["dist/index.d.ts", "dist/types.d.ts", "dist/core-types.d.ts", "dist/errors.d.ts"]) assert.ok(files.includes(f), `npm pack contains ${f}`);
    const app = join(dir, "app");
    cpSync(join(ROOT, "tests/web/types-app"), app, { recursive: true });
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "types-app", private: true, type: "module" }));
    // The package has no dependencies: this installs the tarball alone, offline.
    await run("npm", ["install", "--no-audit", "--no-fund", "--offline", "--loglevel=error", tgz], { cwd: app, timeout: 2 * 60_000 });
    // What a registry and a resolver read from the installed package.json.
    const manifest = JSON.parse(readFileSync(join(app, "node_modules/webpeft/package.json"), "utf8"));
    assert.deepEqual(manifest.exports["."], { types: "./dist/index.d.ts", import: "./dist/index.js", default: "./dist/index.js" });
    assert.match(manifest.repository?.url ?? "", /^git\+https:\/\/github\.com\/webpeft\/webpeft\.git$/);
    assert.ok(manifest.homepage && manifest.bugs?.url, "homepage and bugs");
    for (const r of RESOLUTIONS) {
      await t.test(r.name, async () => {
        const config = `tsconfig.${r.name}.json`;
        writeFileSync(
          join(app, config),
          JSON.stringify({
            compilerOptions: {
              target: "ES2022",
              module: r.module,
              moduleResolution: r.moduleResolution,
              lib: ["ES2022", "DOM", "DOM.Iterable"],
              strict: true,
              noEmit: true,
              skipLibCheck: false,
              types: [],
            },
            files: ["main.ts"],
          }),
        );
        try {
          await run(process.execPath, [TSC, "-p", config], { cwd: app });
        } catch (e) {
          assert.fail(`tsc -p ${config} (moduleResolution ${r.moduleResolution}) failed:\n${e.stdout}${e.stderr}`);
        }
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
