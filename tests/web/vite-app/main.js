// A minimal app using the packed npm package, as a Vite user would write it
// (web/README.md): the wasm as an asset URL, and the threads build copied into
// public/webpeft-threads/ (Vite does not copy it).
import { Tuner } from "webpeft";
import wasmUrl from "webpeft/webpeft_bg.wasm?url";
window.run = async (urls) => {
  const tuner = await Tuner.load({ urls }, { backend: "cpu", wasmUrl, threadsUrl: "/webpeft-threads/webpeft.js" });
  const r = tuner.train([{ prompt: "Hi ", completion: "there" }, { prompt: "Yo ", completion: "friend" }], { task: "causal-lm", method: "lora", steps: 2, batch: 2 });
  const losses = [];
  // A failed run throws out of this loop (and rejects r.done) with a typed WebPeftError.
  for await (const e of r.events) if (e.event === "step") losses.push(e.loss);
  const summary = await r.done;
  const zip = await tuner.exportAdapter();
  return { losses, reason: summary.reason, zip: zip.size, threads: tuner.device.threads, notice: tuner.device.notice, cores: navigator.hardwareConcurrency };
};
