// A minimal app using the packed npm package, as a Vite user would write it
// (web/README.md): the wasm as an asset URL, and the threads build copied into
// public/webpeft-threads/ (Vite does not copy it). run.js is tests/web/apps/run.js.
import { Tuner } from "webpeft";
import wasmUrl from "webpeft/webpeft_bg.wasm?url";
import { run } from "./run.js";
window.run = (urls) => run(Tuner, urls, { wasmUrl, threadsUrl: "/webpeft-threads/webpeft.js" });
