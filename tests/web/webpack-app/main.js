// A minimal app using the packed npm package with webpack 5 (web/README.md): webpack
// emits the worker, which index.js references as `new URL("./worker.js", import.meta.url)`,
// as an asset, but cannot see the wasm the worker loads; `new URL(..., import.meta.url)`
// here makes it emit that too. The threads build is copied to webpeft-threads/ by the test.
// run.js is tests/web/apps/run.js.
import { Tuner } from "webpeft";
import { run } from "./run.js";
const wasmUrl = new URL("webpeft/webpeft_bg.wasm", import.meta.url);
window.run = (urls) => run(Tuner, urls, { wasmUrl, threadsUrl: new URL("webpeft-threads/webpeft.js", document.baseURI) });
