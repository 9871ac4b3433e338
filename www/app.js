// The webpeft page: load a model, pick data and a method, train with a live
// chart, compare base and adapted outputs, export or checkpoint the adapter.
// Bundled by www/build.mjs (esbuild) with uPlot; the webpeft package itself is
// imported from /web/dist at run time so the page always uses the built package.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { Tuner, WebPeftError } from "/web/dist/index.js";

const $ = (id) => document.getElementById(id);

// ---- Bundled models and per-model defaults ----------------------------------

const BUNDLED = {
  minilm: {
    label: "all-MiniLM-L6-v2",
    source: { urls: ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"].map((f) => `/models/all-MiniLM-L6-v2/${f}`) },
    baseModel: "sentence-transformers/all-MiniLM-L6-v2",
  },
  smollm2: {
    label: "SmolLM2-135M-Instruct",
    source: { urls: ["/models/SmolLM2-135M-Instruct.Q4_1.gguf"] },
    baseModel: "HuggingFaceTB/SmolLM2-135M-Instruct",
  },
};

// PEFT-ish starting points; the learning rate depends on the method more than on the model.
const DEFAULTS = {
  "seq-cls": { lr: 1e-3, epochs: 3, batch: 8, seqLen: 64, evalEvery: 5 },
  "causal-lm": { lr: 2e-4, epochs: 1, batch: 4, seqLen: 128, evalEvery: 10 },
};
const METHOD_LR = { bitfit: 1e-3, ia3: 3e-3, prompt: 3e-2, prefix: 1e-2 };

const SAMPLES = {
  tickets: { url: "samples/ticket-labels.csv", name: "ticket-labels.csv", tryText: "I was charged twice this month\nThe app freezes when I upload a file\nPlease add an export to PDF" },
  chat: { url: "samples/chat-style.jsonl", name: "chat-style.jsonl", tryText: "What is the capital of Italy?" },
};

// ---- Page state --------------------------------------------------------------

const state = {
  tuner: null,
  /** How to load the current model again (a failed training start loses it inside the core). */
  source: null,
  modelKey: null, // "minilm" | "smollm2" | "hub:<id>" | "files:<names and sizes>"
  baseModel: undefined,
  data: null, // { name, text }
  adapter: "none", // "none" | "trained" | "loaded"
  training: null, // the current run controller (see train())
  labels: null,
};
window.webpeftPage = state; // for debugging in the console

// ---- Small helpers -----------------------------------------------------------

const fmtInt = (n) => Math.round(n).toLocaleString("en-US");
function fmtBytes(b) {
  if (!Number.isFinite(b)) return "?";
  const u = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) (b /= 1024), i++;
  return `${b.toFixed(b < 10 && i ? 1 : 0)} ${u[i]}`;
}
function fmtTime(s) {
  if (!Number.isFinite(s)) return "?";
  s = Math.round(s);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}
function setText(id, text) {
  $(id).textContent = text;
}
/** A user-facing sentence for any error; WebPeftError's kind and line say what to do. */
function explain(e) {
  if (!(e instanceof WebPeftError) && !e?.kind) return String(e?.message ?? e);
  // The core's messages read "source: line N: what"; say where once, then what.
  let msg = e.message;
  if (e.source && msg.startsWith(`${e.source}: `)) msg = msg.slice(e.source.length + 2);
  if (e.line) msg = msg.replace(new RegExp(`^line ${e.line}: `), "");
  const where = e.line ? ` in ${e.source ?? "the data"}, line ${e.line}` : e.source ? ` (${e.source})` : "";
  const what = {
    format: "The file is malformed",
    unsupported: "Not supported",
    input: "Please check the input",
    device: "This device cannot run it",
    io: "A file could not be read or downloaded",
    crash: "The engine crashed; load the model again",
  }[e.kind] ?? "Error";
  return `${what}${where}: ${msg}`;
}
function showError(section, e) {
  console.error(e);
  setText(`${section}-msg`, e ? explain(e) : "");
}
const clearError = (section) => setText(`${section}-msg`, "");

// ---- 1. Model ----------------------------------------------------------------

function chosenSourceKind() {
  return document.querySelector('input[name="model-source"]:checked').value;
}
function updateSourceFields() {
  const k = chosenSourceKind();
  $("hub-fields").hidden = k !== "hub";
  $("file-fields").hidden = k !== "files";
}
document.querySelectorAll('input[name="model-source"]').forEach((r) => r.addEventListener("change", updateSourceFields));

let droppedModelFiles = null;
function modelFiles() {
  if (droppedModelFiles?.length) return droppedModelFiles;
  const picked = [...$("model-files").files];
  if (picked.length) return picked;
  // A folder brings everything in it; keep what a model needs (names are the last path segment).
  return [...$("model-folder").files].filter((f) => /\.(json|safetensors|gguf)$/.test(f.name));
}
for (const id of ["model-files", "model-folder"]) {
  $(id).addEventListener("change", () => {
    droppedModelFiles = null;
    setText("model-files-list", modelFiles().map((f) => f.name).join(", "));
  });
}
dropZone($("model-drop"), (files) => {
  droppedModelFiles = files;
  setText("model-files-list", files.map((f) => f.name).join(", "));
});

/** What Tuner.load gets for the current choice, plus a key to find the model again after a reload. */
function describeChoice() {
  const k = chosenSourceKind();
  if (BUNDLED[k]) return { source: BUNDLED[k].source, key: k, label: BUNDLED[k].label, baseModel: BUNDLED[k].baseModel };
  if (k === "hub") {
    const id = $("hub-id").value.trim();
    if (!id) throw new WebPeftError("input", "enter a Hub repository id like owner/name", "hub");
    const file = $("hub-file").value.trim() || undefined;
    return { source: { hub: id, file }, key: `hub:${id}${file ? `:${file}` : ""}`, label: id, baseModel: undefined };
  }
  const files = modelFiles();
  if (!files.length) throw new WebPeftError("input", "choose or drop the model's files first", "files");
  return { source: { files }, key: `files:${files.map((f) => `${f.name}:${f.size}`).join(",")}`, label: files.map((f) => f.name).join(", "), baseModel: undefined };
}

async function loadModel(choice = describeChoice()) {
  clearError("model");
  state.training?.abandon();
  state.tuner?.dispose();
  state.tuner = null;
  state.adapter = "none";
  refreshButtons();
  const prog = $("model-progress");
  prog.hidden = false;
  prog.removeAttribute("value"); // indeterminate until the first progress report
  setText("model-status", `Loading ${choice.label}…`);
  const t0 = performance.now();
  try {
    const tuner = await Tuner.load(choice.source, {
      backend: $("backend").value,
      onProgress: (p) => {
        if (p.total) {
          prog.max = p.total;
          prog.value = p.loaded;
        }
        setText("model-status", `Loading ${p.file}: ${fmtBytes(p.loaded)}${p.total ? ` of ${fmtBytes(p.total)}` : ""}`);
      },
    });
    // Reloading the same model (after a crash of the engine) keeps the user's settings.
    const sameModel = state.modelKey === choice.key && state.source;
    state.tuner = tuner;
    state.source = choice;
    state.modelKey = choice.key;
    state.baseModel = choice.baseModel;
    setText("model-status", `Loaded ${choice.label} in ${((performance.now() - t0) / 1000).toFixed(1)} s.`);
    showModelFacts(tuner);
    if (!sameModel) applyModelDefaults(tuner);
    else updateEstimate();
    // With the model's tokenizer and task the check also counts tokens.
    await checkData();
    return tuner;
  } catch (e) {
    setText("model-status", "No model loaded.");
    showError("model", e);
    $("model-facts").hidden = true;
    throw e;
  } finally {
    prog.hidden = true;
    refreshButtons();
  }
}

/** The memory the backend can give: wasm32 has 4 GiB; WebGPU's largest buffer bounds one tensor. */
function deviceLimit(device) {
  return device.backend === "webgpu" && device.maxBufferSize ? { bytes: device.maxBufferSize, what: "largest WebGPU buffer" } : { bytes: 4 * 2 ** 30, what: "WebAssembly memory" };
}

function showModelFacts(t) {
  const { info, device } = t;
  $("model-facts").hidden = false;
  setText("fact-arch", `${info.architecture} (${info.modelType}, ${info.numLayers} layers, hidden size ${info.hiddenSize}, ${info.format} ${info.dtypes.join("/")})`);
  setText("fact-params", `${fmtInt(info.numParameters)} (${(info.numParameters / 1e6).toFixed(1)}M)`);
  const lim = deviceLimit(device);
  setText("fact-memory", `${fmtBytes(info.estimatedBytes)} for the weights; limit ${fmtBytes(lim.bytes)} (${lim.what})`);
  const threads = device.threads > 1 ? `, ${device.threads} threads` : ", one thread";
  const dev = device.backend === "webgpu" ? `WebGPU${device.adapter ? ` on ${device.adapter}` : device.vendor ? ` (${device.vendor})` : ""}` : `CPU (WebAssembly${threads})`;
  setText("fact-device", dev);
  setText("stat-device", dev);
  $("device-notice").hidden = !device.notice;
  setText("device-notice", device.notice ? `Note: ${device.notice}.` : "");
}

const isEncoder = (info) => /bert|roberta|electra|deberta/i.test(`${info.modelType} ${info.architecture}`);

/** Sets task, learning rate and shape for the loaded model (the user can still change them). */
function applyModelDefaults(t) {
  const enc = isEncoder(t.info);
  const task = enc || t.info.task !== "causal-lm" ? "seq-cls" : "causal-lm";
  $("task").value = task;
  $("task").querySelector('option[value="causal-lm"]').disabled = enc;
  $("method").querySelector('option[value="prefix"]').disabled = enc;
  if (enc && $("method").value === "prefix") $("method").value = "lora";
  applyTaskDefaults();
}
function applyTaskDefaults() {
  const d = DEFAULTS[$("task").value];
  $("lr").value = METHOD_LR[$("method").value] ?? d.lr;
  $("epochs").value = d.epochs;
  $("batch").value = d.batch;
  $("seq-len").value = d.seqLen;
  $("eval-every").value = d.evalEvery;
  const causal = $("task").value === "causal-lm";
  setText("try-label", causal ? "Prompt" : "Texts to classify (one per line)");
  if (!$("try-input").value || $("try-input").dataset.sample) {
    $("try-input").value = causal ? SAMPLES.chat.tryText : SAMPLES.tickets.tryText;
    $("try-input").dataset.sample = "1";
  }
  updateEstimate();
}
$("try-input").addEventListener("input", () => delete $("try-input").dataset.sample);
$("task").addEventListener("change", () => {
  applyTaskDefaults();
  checkData();
});
$("method").addEventListener("change", () => {
  $("lr").value = METHOD_LR[$("method").value] ?? DEFAULTS[$("task").value].lr;
  updateMethodFields();
  updateEstimate();
});
function updateMethodFields() {
  const m = $("method").value;
  document.querySelectorAll(".dp-only").forEach((el) => (el.hidden = !$("dp").checked));
  document.querySelectorAll(".lora-only").forEach((el) => (el.hidden = m !== "lora" && m !== "dora"));
  document.querySelectorAll(".prompt-only").forEach((el) => (el.hidden = m !== "prompt" && m !== "prefix"));
}

$("dp").addEventListener("change", updateMethodFields);

$("load-model").addEventListener("click", () => {
  try {
    loadModel().catch(() => {});
  } catch (e) {
    showError("model", e);
  }
});

// ---- 2. Data -----------------------------------------------------------------

// The data is checked by the core's own parser (Tuner.validateData): the format, rows,
// labels and every problem with its line, as training would report them. With a model
// loaded it is also tokenised (token counts, truncation at the sequence length).

const FORMATS = {
  "csv-text-label": "CSV",
  "jsonl-text-label": "JSON lines (text + label)",
  "jsonl-prompt-completion": "JSON lines (prompt / completion)",
  "jsonl-messages": "JSON lines (chat messages)",
  "jsonl-text": "JSON lines (plain text)",
  txt: "plain text",
};

/** The first lines of the file as they are (the check says what they mean). */
function showFirstLines(text) {
  const table = $("data-preview");
  table.replaceChildren();
  const addRow = (cells, header = false) => {
    const tr = table.insertRow();
    for (const c of cells) {
      const cell = document.createElement(header ? "th" : "td");
      cell.textContent = c.length > 160 ? c.slice(0, 160) + "…" : c;
      tr.appendChild(cell);
    }
  };
  addRow(["line", "content"], true);
  const lines = text.split("\n");
  let shown = 0;
  for (let i = 0; i < lines.length && shown < 6; i++) {
    const l = lines[i].replace(/\r$/, "");
    if (!l.trim()) continue;
    addRow([String(i + 1), l]);
    shown++;
  }
  $("data-preview-wrap").hidden = false;
}

/** What the check found, in the status line and (problems) the data message. */
function showCheck(name, v) {
  const what = v.format ? FORMATS[v.format] ?? v.format : "unreadable";
  const rows = `${fmtInt(v.rows)} row${v.rows === 1 ? "" : "s"}`;
  const labels = v.labels ? `; labels ${v.labels.map((l) => l.label).join(", ")} (${v.labels.map((l) => l.count).join(" / ")} rows)` : "";
  const tokens = v.tokens ? `; ${fmtInt(v.tokens.total)} tokens, longest row ${fmtInt(v.tokens.longest)}` : "";
  const warn = v.warnings.length ? ` ${v.warnings.join("; ")}.` : "";
  setText("data-status", `${name}: ${what}, ${rows}${labels}${tokens}.${warn}`);
  if (v.ok) return clearError("data");
  const shown = v.problems.slice(0, 5).map((p) => {
    let msg = p.message.startsWith(`${p.source}: `) ? p.message.slice(p.source.length + 2) : p.message;
    if (p.line !== null) msg = msg.replace(new RegExp(`^line ${p.line}: `), "");
    return p.line !== null ? `line ${p.line}: ${msg}` : msg;
  });
  const more = v.problems.length > shown.length ? ` (and ${v.problems.length - shown.length} more)` : "";
  const n = v.problems.length;
  setText("data-msg", `${n} problem${n === 1 ? "" : "s"} in ${name}${more}: ${shown.join("; ")}`);
}

/** Checks the chosen data (again: after a model is loaded, with its tokenizer and task). */
async function checkData() {
  const d = state.data;
  if (!d) return;
  const t = state.training ? null : state.tuner;
  const opts = t ? { task: $("task").value, seqLen: Number($("seq-len").value) || undefined } : {};
  let v;
  try {
    v = t ? await t.validateData(file(d), opts) : await Tuner.validateData(file(d), opts);
  } catch (e) {
    if (state.data === d) showError("data", e);
    return;
  }
  if (state.data !== d) return; // another file was chosen meanwhile
  d.check = v;
  state.labels = v.labels?.map((l) => l.label) ?? null;
  showCheck(d.name, v);
  updateEstimate();
}

async function useData(name, text) {
  clearError("data");
  state.data = { name, text, check: null };
  state.labels = null;
  setText("data-status", `${name}: checking…`);
  showFirstLines(text);
  refreshButtons();
  await checkData();
}
$("data-file").addEventListener("change", async () => {
  const f = $("data-file").files[0];
  if (f) await useData(f.name, await f.text());
});
dropZone($("data-drop"), async (files) => {
  if (files[0]) await useData(files[0].name, await files[0].text());
});
for (const [id, key] of [["sample-tickets", "tickets"], ["sample-chat", "chat"]]) {
  $(id).addEventListener("click", async () => {
    const s = SAMPLES[key];
    const r = await fetch(s.url);
    await useData(s.name, await r.text());
    $("try-input").value = s.tryText;
    $("try-input").dataset.sample = "1";
  });
}
$("eval-split").addEventListener("input", () => setText("eval-split-value", `${Math.round($("eval-split").value * 100)}%`));

// ---- 3. Method: options and the live estimate --------------------------------

function readOptions() {
  const num = (id) => Number($(id).value);
  const method = $("method").value;
  const o = {
    task: $("task").value,
    method,
    lr: num("lr"),
    epochs: num("epochs"),
    batch: num("batch"),
    seqLen: num("seq-len"),
    gradAccum: num("grad-accum"),
    schedule: $("schedule").value,
    warmup: num("warmup"),
    evalSplit: num("eval-split"),
    seed: num("seed"),
  };
  if (num("steps") > 0) o.steps = num("steps");
  if (num("eval-every") > 0) o.evalEvery = num("eval-every");
  if (method === "lora" || method === "dora") {
    o.r = num("rank");
    o.alpha = num("alpha");
    o.dropout = num("dropout");
    const t = $("targets").value.split(",").map((s) => s.trim()).filter(Boolean);
    if (t.length) o.targets = t;
  }
  if (method === "prompt" || method === "prefix") o.virtualTokens = num("virtual-tokens");
  // delta 1e-5 is below 1/n for any dataset a tab trains on (n < 100,000), as DP needs.
  if ($("dp").checked) o.dp = { targetEpsilon: num("dp-epsilon"), delta: 1e-5, maxGradNorm: num("dp-clip") };
  if (state.baseModel) o.baseModel = state.baseModel;
  return o;
}
function writeOptions(o) {
  const set = (id, v) => v !== undefined && ($(id).value = v);
  set("task", o.task); set("method", o.method); set("lr", o.lr); set("epochs", o.epochs);
  set("batch", o.batch); set("seq-len", o.seqLen); set("grad-accum", o.gradAccum); set("schedule", o.schedule);
  set("warmup", o.warmup); set("eval-split", o.evalSplit); set("seed", o.seed); set("steps", o.steps ?? 0);
  set("eval-every", o.evalEvery ?? 0); set("rank", o.r); set("alpha", o.alpha); set("dropout", o.dropout);
  set("virtual-tokens", o.virtualTokens);
  $("dp").checked = !!o.dp;
  if (o.dp) { set("dp-epsilon", o.dp.targetEpsilon); set("dp-clip", o.dp.maxGradNorm); }
  $("targets").value = o.targets ? o.targets.join(", ") : "";
  setText("eval-split-value", `${Math.round($("eval-split").value * 100)}%`);
  updateMethodFields();
}

/**
 * Trainable parameters of a configuration, estimated from the model's shape
 * (hidden size h, layers L, intermediate ~4h; PEFT's default targets: BERT
 * query/value, decoders q_proj/v_proj, counted as h×h). The core's exact count
 * arrives with the start event.
 */
function estimateTrainable(info, o) {
  const h = info.hiddenSize, L = info.numLayers, ff = 4 * h;
  const enc = isEncoder(info);
  const targets = o.targets?.length ?? 2;
  let n = 0;
  switch (o.method) {
    case "lora": n = L * targets * o.r * 2 * h; break;
    case "dora": n = L * targets * (o.r * 2 * h + h); break;
    case "bitfit": n = enc ? L * (9 * h + ff) : L * 2 * h; break; // every bias (decoders have few: the norms)
    case "ia3": n = L * (2 * h + ff); break; // key, value, feed-forward down projection
    case "prompt": n = o.virtualTokens * h; break;
    case "prefix": n = o.virtualTokens * L * 2 * h; break;
  }
  if (o.task === "seq-cls") {
    const k = state.labels?.length || info.numLabels || 2;
    n += h * k + k; // the classification head is trained too (PEFT's modules_to_save)
  }
  return n;
}
function updateEstimate() {
  const t = state.tuner;
  if (!t) return;
  const o = readOptions();
  const n = estimateTrainable(t.info, o);
  const { hiddenSize: h, numLayers: L, vocabSize: V } = t.info;
  // Weights + (adapter weights, gradients, two AdamW moments) + activations kept for the backward pass.
  const acts = o.batch * o.seqLen * (L * 24 * h + (o.task === "causal-lm" ? V : 0)) * 4;
  const total = (t.info.estimatedBytes ?? t.info.numParameters * 4) + n * 16 + acts;
  const lim = deviceLimit(t.device);
  setText("est-params", `≈ ${fmtInt(n)} (estimate)`);
  setText("est-share", `≈ ${((100 * n) / t.info.numParameters).toFixed(3)}% of ${fmtInt(t.info.numParameters)}`);
  setText("est-memory", `≈ ${fmtBytes(total)} (estimate) of ${fmtBytes(lim.bytes)} available${total > lim.bytes ? ": too much, lower batch or sequence length" : ""}`);
}
document.querySelectorAll("#method-section input, #method-section select, #eval-split").forEach((el) => el.addEventListener("input", updateEstimate));

// ---- 4. Training ---------------------------------------------------------------

let chart = null;
const series = { x: [], loss: [], evalLoss: [], lr: [] };
function resetChart() {
  for (const k of Object.keys(series)) series[k] = [];
  drawChart();
}
function chartWidth() {
  return Math.max(240, $("chart").clientWidth || 600);
}
function drawChart() {
  const data = [series.x, series.loss, series.evalLoss, series.lr];
  $("chart").dataset.points = String(series.x.length);
  if (!chart) {
    chart = new uPlot(
      {
        width: chartWidth(),
        height: 260,
        scales: { x: { time: false }, lr: { auto: true } },
        axes: [
          { label: "step" },
          { label: "loss" },
          { scale: "lr", side: 1, label: "learning rate", values: (u, v) => v.map((x) => x.toExponential(0)), grid: { show: false } },
        ],
        series: [
          { label: "step" },
          { label: "train loss", stroke: "#2563eb", width: 2 },
          { label: "eval loss", stroke: "#dc2626", width: 2, spanGaps: true, points: { show: true, size: 6 } },
          { label: "learning rate", stroke: "#9ca3af", scale: "lr", dash: [4, 4] },
        ],
      },
      data,
      $("chart"),
    );
    new ResizeObserver(() => chart.setSize({ width: chartWidth(), height: 260 })).observe($("chart"));
  } else {
    chart.setData(data);
  }
}

/**
 * One training job: one run of the package. With checkpoints on, the run
 * emits a checkpoint event (adapter, optimizer state, trainer state) every
 * `checkpointEvery` steps and the page writes it to OPFS; after a reload the
 * run continues from it with `resumeFrom`, exactly as if it had not stopped
 * (same learning-rate schedule, batches and losses).
 */
class Job {
  constructor({ options, data, checkpointEvery, resumeFrom = null }) {
    this.options = options;
    this.data = data;
    this.every = checkpointEvery;
    this.resumeFrom = resumeFrom; // { step, files } from OPFS, or null
    this.done = resumeFrom?.step ?? 0;
    this.total = null;
    this.run = null;
    this.paused = false;
    this.stopped = false;
    this.abandoned = false;
    this.lastLoss = undefined;
    this.saving = Promise.resolve();
    // What of the OPFS checkpoint is this run's already (a resumed run's data and folder).
    this.savedData = !!resumeFrom;
    this.savedFolder = resumeFrom?.folder;
  }
  abandon() {
    this.abandoned = this.stopped = true;
    this.run?.cancel().catch(() => {});
  }
  async pause() {
    this.paused = true;
    await this.run?.pause();
  }
  async resume() {
    this.paused = false;
    await this.run?.resume();
  }
  async stop() {
    this.stopped = true;
    await this.run?.cancel();
  }
  async start(tuner, ui) {
    const opts = this.every > 0 ? { ...this.options, checkpointEvery: this.every } : this.options;
    const run = tuner.train(file(this.data), opts, undefined, this.resumeFrom ? { resumeFrom: this.resumeFrom.files } : {});
    this.run = run;
    if (this.paused) run.pause().catch(() => {});
    // A failed run throws its error out of this loop (the package's run.events does).
    try {
      for await (const e of run.events) {
        if (this.abandoned) break;
        if (e.event === "start") {
          this.total = e.totalSteps;
          ui.start(e, this);
        } else if (e.event === "step") {
          this.done = e.step;
          this.lastLoss = e.loss;
          ui.step(e, this);
        } else if (e.event === "eval") ui.evaluated(e);
        else if (e.event === "paused") ui.paused(true);
        else if (e.event === "resumed") ui.paused(false);
        // Saved one after the other, without holding up the events (the run goes on meanwhile).
        else if (e.event === "checkpoint") this.saving = this.saving.then(() => ui.checkpoint(this, e));
      }
      const summary = await run.done;
      await this.saving;
      return summary;
    } finally {
      this.run = null;
    }
  }
}

const file = (d) => new File([d.text], d.name);

const ui = {
  start(e, job) {
    $("train-progress").max = job.total;
    if (e.trainableParameters) {
      setText("est-params", `${fmtInt(e.trainableParameters)} (exact)`);
      setText("est-share", `${((100 * e.trainableParameters) / e.totalParameters).toFixed(3)}% of ${fmtInt(e.totalParameters)}`);
    }
    if (e.warnings?.length) setText("train-msg", `Warnings: ${e.warnings.join("; ")}`);
  },
  step(e, job) {
    series.x.push(e.step);
    series.loss.push(e.loss);
    series.evalLoss.push(null);
    series.lr.push(e.lr);
    drawChart();
    $("train-progress").max = job.total;
    $("train-progress").value = e.step;
    const epochs = job.options.steps ? "" : ` · epoch ${((e.step / job.total) * job.options.epochs).toFixed(1)} of ${job.options.epochs}`;
    setText("train-status", `Step ${e.step} / ${job.total}${epochs} · ETA ${fmtTime(e.etaS)}`);
    setText("stat-loss", e.loss.toFixed(4));
    setText("stat-tps", fmtInt(e.tokensPerS));
    setText("stat-epsilon", e.epsilon !== undefined ? `ε = ${e.epsilon.toFixed(2)} of ${job.options.dp.targetEpsilon} (δ = ${job.options.dp.delta})` : "not private");
  },
  evaluated(e) {
    const i = series.x.lastIndexOf(e.step);
    if (i >= 0) series.evalLoss[i] = e.metrics.loss;
    drawChart();
    const m = e.metrics;
    setText("stat-eval", `loss ${m.loss.toFixed(4)}${m.accuracy !== undefined ? ` · accuracy ${(m.accuracy * 100).toFixed(0)}%` : ""}${m.perplexity !== undefined ? ` · perplexity ${m.perplexity.toFixed(1)}` : ""}`);
  },
  paused(p) {
    if (p) setText("train-status", `Paused at step ${$("train-progress").value} / ${$("train-progress").max}.`);
    refreshButtons();
  },
  async checkpoint(job, e) {
    if (job.abandoned) return;
    try {
      await saveCheckpoint(job, e);
      setText("keep-status", `Checkpoint saved at step ${e.step} of ${job.total}.`);
    } catch (err) {
      setText("keep-status", `Checkpoint not saved: ${explain(err)}`);
    }
  },
};

/** Starts a run; `resumeFrom` ({ meta, files } from OPFS) continues a checkpointed one. */
async function startTraining({ resumeFrom } = {}) {
  clearError("train");
  if (!state.tuner) return showError("train", new WebPeftError("input", "load a model first (section 1)"));
  if (!state.data) return showError("train", new WebPeftError("input", "choose training data first (section 2)"));
  // Data the check found problems in is not sent: the first one says what to fix (the
  // problems stay listed under Data).
  const problem = state.data.check?.problems[0];
  if (!resumeFrom && problem) {
    if (problem.line !== null) return setText("train-msg", `Training did not start: fix line ${problem.line} of ${state.data.name} (see Data).`);
    return setText("train-msg", `Training did not start: ${state.data.name} has a problem (see Data).`);
  }
  clearError("data");
  // A finished run leaves its adapter on the model: the checkbox says whether
  // this run continues it or trains a new one (the package's `adapter` option;
  // a failed start keeps the current adapter). A resumed run brings its own
  // adapter, so the current one is dropped first.
  if (resumeFrom && state.adapter !== "none") {
    await state.tuner.resetAdapter();
    state.adapter = "none";
  }
  const meta = resumeFrom?.meta;
  const options = meta?.options ?? readOptions();
  if (!resumeFrom && state.adapter !== "none") options.adapter = $("continue-adapter").checked ? "continue" : "new";
  const job = new Job({
    options,
    data: state.data,
    checkpointEvery: meta?.checkpointEvery ?? Number($("checkpoint-every").value),
    resumeFrom: resumeFrom ? { step: meta.step, folder: meta.folder, files: resumeFrom.files } : null,
  });
  state.training = job;
  if (resumeFrom) {
    // The chart so far comes back with the checkpoint.
    for (const k of Object.keys(series)) series[k] = (meta.series?.[k] ?? []).slice();
    drawChart();
  } else {
    resetChart();
    // A new run replaces an earlier run's checkpoint.
    if (job.every > 0) {
      await clearCheckpoint();
      $("resume-offer").hidden = true;
    }
  }
  setText("train-status", resumeFrom ? `Resuming at step ${job.done}…` : "Starting…");
  setText("stat-epsilon", "–");
  refreshButtons();
  const t0 = performance.now();
  try {
    const summary = await job.start(state.tuner, ui);
    if (job.abandoned) return;
    state.adapter = "trained";
    const how = summary.reason === "completed" ? "Finished" : summary.reason === "cancelled" ? "Stopped" : `Ended (${summary.reason})`;
    setText("train-status", `${how}: ${summary.steps} steps in ${fmtTime((performance.now() - t0) / 1000)}${summary.loss !== undefined ? `, last loss ${summary.loss.toFixed(4)}` : ""}.`);
    $("train-progress").value = summary.steps;
    // The checkpoint is for runs cut short by a reload; a run that ended on purpose needs none.
    if (job.every > 0) {
      await clearCheckpoint();
      setText("keep-status", "The run ended, so its checkpoint was cleared; download the adapter to keep it.");
    }
  } catch (e) {
    if (job.abandoned) return;
    showError(e.line || e.source?.match?.(/\.(jsonl|csv|txt)$/) ? "data" : "train", e);
    // A failed start leaves the model and its adapter as they were; a run that
    // started and then failed keeps the adapter of its last good step.
    const started = job.total !== null;
    if (started) state.adapter = "trained";
    setText("train-status", started ? `Stopped by an error at step ${job.done}; the adapter keeps its last good values.` : "Not started.");
    if (state.data && e.line) setText("train-msg", `Training did not start: fix line ${e.line} of ${state.data.name} (see Data).`);
    // Only a crash of the engine loses the model: load it again so the page keeps working.
    if (e.kind === "crash") {
      setText("model-status", "Reloading the model after the error…");
      await loadModel(state.source).catch(() => {});
    }
  } finally {
    if (state.training === job) state.training = null;
    refreshButtons();
  }
}

$("start").addEventListener("click", () => startTraining());
$("pause").addEventListener("click", async () => {
  await state.training?.pause();
  ui.paused(true);
});
$("resume").addEventListener("click", async () => {
  await state.training?.resume();
  setText("train-status", "Resumed…");
  refreshButtons();
});
$("stop").addEventListener("click", async () => {
  setText("train-status", "Stopping after this step…");
  await state.training?.stop();
});

function refreshButtons() {
  const t = state.training;
  const busy = !!t;
  $("start").disabled = busy || !state.tuner;
  $("pause").disabled = !busy || t.paused;
  $("resume").disabled = !busy || !t.paused;
  $("stop").disabled = !busy;
  $("load-model").disabled = busy;
  $("compare").disabled = busy || !state.tuner;
  $("download-adapter").disabled = busy || !state.tuner || state.adapter === "none";
  $("adapter-files").disabled = busy || !state.tuner;
  $("continue-wrap").hidden = state.adapter === "none" || busy;
}

// ---- 5. Try it -----------------------------------------------------------------

$("compare").addEventListener("click", async () => {
  clearError("try");
  const t = state.tuner;
  if (!t) return;
  const input = $("try-input").value.trim();
  if (!input) return showError("try", new WebPeftError("input", "type a prompt or some texts first"));
  $("compare").disabled = true;
  try {
    if ($("task").value === "causal-lm") await compareGenerate(t, input);
    else await compareClassify(t, input.split("\n").map((s) => s.trim()).filter(Boolean));
  } catch (e) {
    showError("try", e);
  } finally {
    refreshButtons();
  }
});

async function compareGenerate(t, prompt) {
  const opts = { chat: t.info.hasChatTemplate, maxNewTokens: 48 };
  for (const [adapter, id] of [[false, "base-out"], [true, "adapted-out"]]) {
    const out = $(id);
    out.replaceChildren();
    const p = document.createElement("p");
    out.appendChild(p);
    // One worker runs one thing at a time: the base answer first, then the adapted one.
    if (adapter && state.adapter === "none") {
      p.textContent = "(no adapter yet: train or load one)";
      continue;
    }
    await t.generate(prompt, { ...opts, adapter, onToken: (s) => (p.textContent += s) });
  }
}

async function compareClassify(t, texts) {
  for (const [adapter, id] of [[false, "base-out"], [true, "adapted-out"]]) {
    const out = $(id);
    out.replaceChildren();
    if (adapter && state.adapter === "none") {
      out.textContent = "(no adapter yet: train or load one)";
      continue;
    }
    let results;
    try {
      results = await t.classify(texts, { adapter });
    } catch (e) {
      out.textContent = explain(e);
      continue;
    }
    const table = document.createElement("table");
    table.setAttribute("aria-label", adapter ? "Adapted predictions" : "Base predictions");
    const head = table.insertRow();
    for (const h of ["text", "label", "probabilities"]) head.appendChild(Object.assign(document.createElement("th"), { textContent: h }));
    results.forEach((r, i) => {
      const tr = table.insertRow();
      // The exact probabilities: the cell shows whole percentages, its hover text six decimals.
      tr.dataset.probs = JSON.stringify(r.probs);
      tr.insertCell().textContent = texts[i];
      tr.insertCell().textContent = r.label;
      tr.insertCell().textContent = Object.entries(r.probs)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${(v * 100).toFixed(0)}%`)
        .join(", ");
      tr.cells[2].title = Object.entries(r.probs).map(([k, v]) => `${k} ${v.toFixed(6)}`).join(", ");
    });
    out.appendChild(table);
  }
}

// ---- 6. Keep the work ----------------------------------------------------------

$("download-adapter").addEventListener("click", async () => {
  clearError("keep");
  try {
    const zip = await state.tuner.exportAdapter();
    const name = `webpeft-${$("method").value}-${(state.source?.label ?? "model").replace(/[^\w.-]+/g, "_").slice(0, 40)}.zip`;
    const a = Object.assign(document.createElement("a"), { href: URL.createObjectURL(zip), download: name });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    setText("keep-status", `Saved ${name} (${fmtBytes(zip.size)}): the PEFT files and a README with the Python to load it.`);
  } catch (e) {
    showError("keep", e);
  }
});

async function loadAdapterFiles(files) {
  clearError("keep");
  if (!state.tuner) return showError("keep", new WebPeftError("input", "load the base model first (section 1)"));
  try {
    await state.tuner.loadAdapter(files);
    state.adapter = "loaded";
    $("continue-adapter").checked = true;
    setText("keep-status", `Loaded the adapter from ${files.map((f) => f.name).join(", ")}.`);
  } catch (e) {
    showError("keep", e);
  } finally {
    refreshButtons();
  }
}
$("adapter-files").addEventListener("change", () => loadAdapterFiles([...$("adapter-files").files]));
dropZone($("adapter-drop"), loadAdapterFiles);

// OPFS checkpoint: webpeft-checkpoint/{data, meta.json, step-N/{config, weights, sidecar, optimizer, state}}.
// Each checkpoint's files go into their own folder and meta.json (which names
// the folder) is written after them, so a reload in the middle of a save still
// finds the previous complete checkpoint.
const CKPT = "webpeft-checkpoint";
const CKPT_FILES = ["config", "weights", "sidecar", "optimizer", "state"];
async function ckptDir(create) {
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle(CKPT, { create });
}
async function writeFile(dir, name, data) {
  const h = await dir.getFileHandle(name, { create: true });
  const w = await h.createWritable();
  await w.write(data);
  await w.close();
}
async function readBytes(dir, name) {
  return new Uint8Array(await (await (await dir.getFileHandle(name)).getFile()).arrayBuffer());
}
async function saveCheckpoint(job, e) {
  const dir = await ckptDir(true);
  if (!job.savedData) {
    // The data once per run: the resumed run gets the same bytes and the same options, so the
    // core's seeded evalSplit holds out the same rows and its shuffle continues in the same order.
    await writeFile(dir, "data", job.data.text);
    job.savedData = true;
  }
  const folder = `step-${e.step}`;
  const sub = await dir.getDirectoryHandle(folder, { create: true });
  for (const k of CKPT_FILES) await writeFile(sub, k, e.files[k]);
  const old = job.savedFolder;
  const meta = {
    version: 2,
    savedAt: new Date().toISOString(),
    model: { key: state.modelKey, label: state.source?.label, backend: $("backend").value },
    dataName: job.data.name,
    options: job.options,
    checkpointEvery: job.every,
    step: e.step,
    total: job.total,
    folder,
    // The chart up to the checkpoint, to draw again on resume.
    series: Object.fromEntries(Object.entries(series).map(([k, v]) => [k, v.slice(0, series.x.lastIndexOf(e.step) + 1)])),
  };
  await writeFile(dir, "meta.json", JSON.stringify(meta));
  job.savedFolder = folder;
  if (old && old !== folder) await dir.removeEntry(old, { recursive: true }).catch(() => {});
}
async function readCheckpoint() {
  try {
    const dir = await ckptDir(false);
    const meta = JSON.parse(await (await (await dir.getFileHandle("meta.json")).getFile()).text());
    if (meta.version !== 2) return null; // an older page's segment checkpoint cannot resume exactly
    return { dir, meta };
  } catch {
    return null;
  }
}
async function clearCheckpoint() {
  try {
    const root = await navigator.storage.getDirectory();
    await root.removeEntry(CKPT, { recursive: true });
  } catch {
    // nothing saved
  }
}

async function offerResume() {
  const ck = await readCheckpoint();
  if (!ck) return;
  const m = ck.meta;
  $("resume-offer").hidden = false;
  const local = m.model.key.startsWith("files");
  setText(
    "resume-text",
    `A run on ${m.model.label} with ${m.dataName} stopped at step ${m.step} of ${m.total} (saved ${new Date(m.savedAt).toLocaleString()}). ` +
      (local ? "Load the same model files in section 1 first, then resume. " : "") +
      "Resuming continues exactly where it stopped: the adapter, the optimizer state, the learning-rate schedule and the data order are all restored.",
  );
  $("resume-run").onclick = async () => {
    clearError("model");
    try {
      if (!local) {
        const k = m.model.key;
        const radio = document.querySelector(`input[name="model-source"][value="${BUNDLED[k] ? k : "hub"}"]`);
        radio.checked = true;
        if (k.startsWith("hub:")) {
          const [, id, f] = k.split(":");
          $("hub-id").value = id;
          $("hub-file").value = f ?? "";
        }
        updateSourceFields();
        $("backend").value = m.model.backend ?? "auto";
        await loadModel();
      } else if (!state.tuner) {
        throw new WebPeftError("input", "load the model files first (section 1), then press Resume run");
      }
      const sub = await ck.dir.getDirectoryHandle(m.folder);
      const files = {};
      for (const k of CKPT_FILES) files[k] = await readBytes(sub, k);
      const text = await (await (await ck.dir.getFileHandle("data")).getFile()).text();
      await useData(m.dataName, text);
      writeOptions(m.options);
      $("checkpoint-every").value = m.checkpointEvery;
      $("resume-offer").hidden = true;
      startTraining({ resumeFrom: { meta: m, files } });
    } catch (e) {
      showError("model", e);
    }
  };
  $("discard-run").onclick = async () => {
    await clearCheckpoint();
    $("resume-offer").hidden = true;
  };
}

// ---- Drag and drop -------------------------------------------------------------

/** Makes `el` accept dropped files (folders are walked one level deep per entry). */
function dropZone(el, onFiles) {
  el.addEventListener("dragover", (e) => {
    e.preventDefault();
    el.classList.add("over");
  });
  el.addEventListener("dragleave", () => el.classList.remove("over"));
  el.addEventListener("drop", async (e) => {
    e.preventDefault();
    el.classList.remove("over");
    const entries = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
    const files = [];
    const walk = async (entry) => {
      if (entry.isFile) files.push(await new Promise((ok, fail) => entry.file(ok, fail)));
      else if (entry.isDirectory) {
        const reader = entry.createReader();
        for (;;) {
          const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
          if (!batch.length) break;
          for (const c of batch) await walk(c);
        }
      }
    };
    if (entries.length) for (const en of entries) await walk(en);
    else files.push(...e.dataTransfer.files);
    onFiles(files);
  });
}

// ---- Start-up ------------------------------------------------------------------

updateSourceFields();
updateMethodFields();
refreshButtons();
resetChart();
offerResume();
window.webpeftReady = true;
