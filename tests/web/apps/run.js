// What each setup test's app does with the packed package (tests/web/vite.test.mjs,
// tests/web/setups.test.mjs): load the tiny Llama on the CPU backend, train two LoRA
// steps, generate a few tokens with the adapter, export the adapter zip. `options` are
// the setup's load options (wasmUrl, threadsUrl).
export async function run(Tuner, urls, options = {}) {
  const tuner = await Tuner.load({ urls }, { backend: "cpu", ...options });
  const r = tuner.train([{ prompt: "Hi ", completion: "there" }, { prompt: "Yo ", completion: "friend" }], { task: "causal-lm", method: "lora", steps: 2, batch: 2 });
  const losses = [];
  // A failed run throws out of this loop (and rejects r.done) with a typed WebPeftError.
  for await (const e of r.events) if (e.event === "step") losses.push(e.loss);
  const summary = await r.done;
  const text = await tuner.generate("Hi ", { maxNewTokens: 4 });
  const zip = await tuner.exportAdapter();
  const out = {
    losses,
    reason: summary.reason,
    text,
    zip: zip.size,
    modelType: tuner.info.modelType,
    threads: tuner.device.threads,
    notice: tuner.device.notice,
    cores: navigator.hardwareConcurrency,
  };
  tuner.dispose();
  return out;
}
