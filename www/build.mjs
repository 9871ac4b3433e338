// Builds the page's script into www/dist/: app.js (the page's modules in
// www/src/ from the entry main.js, with uPlot bundled) and app.css (uPlot's
// styles). The webpeft package stays external: the page imports
// /web/dist/index.js, built by web/build.mjs.
// Usage: node www/build.mjs
import { build } from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const www = dirname(fileURLToPath(import.meta.url));
const t0 = Date.now();
await build({
  // Named "app" so that index.html's dist/app.js and dist/app.css stay as they are.
  entryPoints: { app: join(www, "src", "main.js") },
  outdir: join(www, "dist"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  sourcemap: true,
  minify: true,
  external: ["/web/dist/index.js"],
  logLevel: "warning",
});
console.log(`www: built www/dist/app.js and app.css in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
