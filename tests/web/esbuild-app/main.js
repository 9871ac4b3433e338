// A minimal app using the packed npm package with esbuild (web/README.md): esbuild bundles
// index.js but leaves its `new URL("./worker.js", import.meta.url)` as it is and copies no
// asset, so the test copies the package's worker.js, webpeft_bg.wasm and threads/ next to
// the bundle, where those URLs point. run.js is tests/web/apps/run.js.
import { Tuner } from "webpeft";
import { run } from "./run.js";
window.run = (urls) => run(Tuner, urls);
