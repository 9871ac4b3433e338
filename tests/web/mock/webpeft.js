// A stand-in for the wasm-bindgen output of the Rust core (web/pkg/webpeft.js),
// with the same exports, for testing the package's worker protocol without the
// wasm: typed errors, streaming, pause/resume/cancel and wasm traps. Options it
// understands beyond the real API: mock_trap_at (trainStep throws a
// WebAssembly.RuntimeError at that step), mock_trap_async (the trap escapes in a
// microtask and the step's promise never settles, as a panic inside
// wasm-bindgen-futures does), mock_step_ms (time per step), mock_fail_at (trainStep
// fails with a typed "input" error at that step, as a diverging loss does).
const enc = new TextEncoder();
const dec = new TextDecoder();
const kindError = (kind, message) => Object.assign(new Error(message), { kind });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// The core's option enums and its serde error for an unknown value.
const CHOICES = { task: ["causal-lm", "seq-cls"], method: ["lora", "dora", "bitfit", "ia3", "prompt", "prefix"], adapter: ["new", "continue"] };
const settings = (o) => JSON.stringify([o.task, o.method, o.r ?? null, o.alpha ?? null, o.targets ?? null]);

export default async function init() {}

export async function initDevice(backend) {
  if (backend !== "webgpu" && backend !== "cpu") throw kindError("input", `backend: unknown ${backend}`);
  return { backend, adapter: backend === "webgpu" ? "mock adapter" : undefined, f16: false, subgroups: false, maxBufferSize: 1 << 30 };
}

export class Session {
  static load(names, files) {
    const i = names.indexOf("config.json");
    if (i < 0) throw kindError("format", "config.json: missing from the model files");
    const m = names.indexOf("model.safetensors");
    if (m >= 0 && files[m].length < 8) throw kindError("format", "model.safetensors: truncated: 8-byte header length missing");
    const s = new Session();
    s.config = JSON.parse(dec.decode(files[i]));
    s.bytes = files.reduce((a, f) => a + f.length, 0);
    s.adapter = null;
    s.enabled = true;
    s.training = null;
    return s;
  }
  info() {
    return {
      architecture: "mock", model_type: this.config.model_type ?? "llama", task: "causal-lm", num_parameters: 1000,
      vocab_size: this.config.vocab_size ?? 32, hidden_size: 8, num_layers: 1, context_length: 128, num_labels: null,
      has_chat_template: false, dtypes: ["F32"], format: "safetensors", estimated_bytes: this.bytes,
    };
  }
  parseData(name, bytes) {
    return { format: "jsonl", rows: this.#rows(name, bytes).length, preview: [] };
  }
  #rows(name, bytes) {
    const lines = dec.decode(bytes).split("\n");
    const rows = [];
    lines.forEach((l, i) => {
      if (!l.trim()) return;
      if (name.endsWith(".jsonl")) {
        try {
          rows.push(JSON.parse(l));
        } catch (e) {
          throw kindError("input", `${name}: line ${i + 1}: not valid JSON (${e.message})`);
        }
      } else rows.push(l);
    });
    if (!rows.length) throw kindError("input", `${name}: no examples`);
    return rows;
  }
  startTraining(trainName, trainBytes, evalName, evalBytes, options) {
    // Everything is checked before the adapter changes, as in the core.
    if (this.training) throw kindError("input", "session: training is already running");
    for (const [k, valid] of Object.entries(CHOICES)) {
      const v = options[k];
      if (v !== undefined && !valid.includes(v)) throw Object.assign(kindError("input", `${k}: unknown variant \`${v}\`, expected one of ${valid.map((x) => `\`${x}\``).join(", ")}`), { source: k });
    }
    const rows = this.#rows(trainName, trainBytes);
    if (!this.adapter && options.adapter === "continue") throw Object.assign(kindError("input", "adapter: 'continue' needs an adapter on the model"), { source: "adapter" });
    const adapter = !this.adapter ? "new" : options.adapter ?? (this.adapter.settings === settings(options) ? "continue" : "new");
    this.training = { step: 0, total: options.steps ?? 10, options };
    if (adapter === "new") this.adapter = { method: options.method, settings: settings(options) };
    return { trainable_parameters: 10, total_parameters: 1010, total_steps: this.training.total, train_examples: rows.length, eval_examples: 0, warnings: [], adapter };
  }
  async trainStep() {
    const t = this.training;
    if (!t) throw kindError("input", "train: no run");
    t.step += 1;
    if (t.options.mock_trap_at === t.step) {
      if (t.options.mock_trap_async) {
        console.error("panicked at src/web.rs:1:1: mock panic in a future");
        queueMicrotask(() => { throw new WebAssembly.RuntimeError("unreachable"); });
        return new Promise(() => {});
      }
      console.error("panicked at src/web.rs:1:1: mock panic");
      throw new WebAssembly.RuntimeError("unreachable");
    }
    await sleep(t.options.mock_step_ms ?? 20);
    if (t.options.mock_fail_at === t.step) throw Object.assign(kindError("input", `train: the loss became NaN at step ${t.step}; training stopped and the adapter keeps its last good values`), { source: "train" });
    const ev = [{ event: "step", step: t.step, total_steps: t.total, epoch: 0, loss: 3 / t.step, lr: 1e-3, grad_norm: 1, tokens_per_s: 100, elapsed_s: t.step * 0.02, eta_s: 0 }];
    if (t.options.eval_every && t.step % t.options.eval_every === 0) ev.push({ event: "eval", step: t.step, metrics: { loss: 2 / t.step, perplexity: Math.exp(2 / t.step), examples: 8 } });
    if (t.step >= t.total) ev.push({ event: "done", step: t.step, reason: "completed" });
    return ev;
  }
  /** The run's state as a checkpoint: the mock's "optimizer" and "state" are JSON. */
  async checkpoint() {
    const t = this.training;
    if (!t) throw kindError("input", "checkpoint: no run is open");
    const a = await this.exportAdapter();
    return { ...a, optimizer: enc.encode(JSON.stringify({ moments: t.step })), state: enc.encode(JSON.stringify({ global_step: t.step })) };
  }
  restoreCheckpoint(optimizer, state) {
    const t = this.training;
    if (!t) throw kindError("input", "restoreCheckpoint: start the run first");
    let st;
    try {
      st = JSON.parse(dec.decode(state));
    } catch (e) {
      throw kindError("format", `trainer_state.json: not valid JSON (${e.message})`);
    }
    t.step = st.global_step;
  }
  isTraining() {
    return !!this.training && this.training.step < this.training.total;
  }
  finishTraining() {
    this.training = null;
  }
  async exportAdapter() {
    if (!this.adapter) throw kindError("input", "adapter: none trained or loaded");
    return { config: enc.encode(JSON.stringify({ peft_type: "LORA", base_model_name_or_path: "mock" })), weights: new Uint8Array([1, 2, 3]), sidecar: enc.encode("{}") };
  }
  loadAdapter(config) {
    this.adapter = JSON.parse(dec.decode(config));
  }
  resetAdapter() {
    if (this.training) throw kindError("input", "session: finish training before resetting the adapter");
    this.adapter = null;
  }
  setAdapterEnabled(on) {
    this.enabled = on;
  }
  /**
   * As the core on the CPU backend: it never yields to the event loop between tokens
   * by itself; it awaits the callback's answer when that is a Promise and stops on false.
   */
  async generate(prompt, chat, maxNewTokens, temperature, topP, seed, onToken) {
    let out = "";
    for (let i = 0; i < maxNewTokens; i++) {
      const t = ` t${i}${this.enabled && this.adapter ? "a" : ""}`;
      out += t;
      let go = onToken(t);
      if (go instanceof Promise) go = await go;
      if (go === false) break;
    }
    return out;
  }
  async classify(texts) {
    return texts.map(() => ({ label: "a", probs: { a: 0.75, b: 0.25 } }));
  }
  async forward(ids) {
    return Float32Array.from({ length: ids.length * 4 }, (_, i) => i + (this.enabled && this.adapter ? 0.5 : 0));
  }
  free() {}
}
