// Section 1, Model: choosing the source (bundled, Hub or local files), loading it and showing its facts.
import { Tuner, WebPeftError } from "/web/dist/index.js";
import { $, setText, dropZone } from "./dom.js";
import { fmtBytes, fmtInt } from "./format.js";
import { showError, clearError } from "./errors.js";
import { state, adapterChanged, workChanged } from "./state.js";
import { BUNDLED } from "./presets.js";
import { refreshButtons } from "./buttons.js";
import { applyModelDefaults } from "./method.js";
import { deviceLimit, updateEstimate } from "./estimate.js";
import { checkData } from "./data.js";
import { resetResults } from "./results.js";

function chosenSourceKind() {
  return document.querySelector('input[name="model-source"]:checked').value;
}

export function updateSourceFields() {
  const k = chosenSourceKind();
  $("hub-fields").hidden = k !== "hub";
  $("file-fields").hidden = k !== "files";
}

let droppedModelFiles = null;
function modelFiles() {
  if (droppedModelFiles?.length) return droppedModelFiles;
  const picked = [...$("model-files").files];
  if (picked.length) return picked;
  // A folder brings everything in it; keep what a model needs (names are the last path segment).
  return [...$("model-folder").files].filter((f) => /\.(json|safetensors|gguf)$/.test(f.name));
}

const showModelFiles = (files) => setText("model-files-list", files.map((f) => f.name).join(", "));

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

/** Selects a model saved by its key and its backend (local files: the source only; the person picks the files again). */
export function selectModel(key, backend) {
  const kind = BUNDLED[key] ? key : key.startsWith("files:") ? "files" : "hub";
  const radio = document.querySelector(`input[name="model-source"][value="${kind}"]`);
  radio.checked = true;
  if (key.startsWith("hub:")) {
    const [, id, f] = key.split(":");
    $("hub-id").value = id;
    $("hub-file").value = f ?? "";
  }
  updateSourceFields();
  $("backend").value = backend ?? "auto";
}

export async function loadModel(choice = describeChoice()) {
  clearError("model");
  dropModel();
  const prog = $("model-progress");
  prog.hidden = false;
  prog.removeAttribute("value"); // indeterminate until the first progress report
  setText("model-status", `Loading ${choice.label}…`);
  const t0 = performance.now();
  try {
    await showPlan(choice);
    const tuner = await Tuner.load(choice.source, { backend: $("backend").value, onProgress: showProgress(prog) });
    await useModel(tuner, choice, t0);
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

/**
 * The memory plan, from the files' headers only, shown before the download starts. A plan that
 * cannot be made here (an unreachable Hub) is left to the load, which reports its own error;
 * one that does not fit is reported by the load too, before anything is downloaded.
 */
async function showPlan(choice) {
  setText("model-plan", "");
  const backend = $("backend").value === "webgpu" ? "webgpu" : "cpu";
  let plan;
  try {
    plan = await Tuner.plan(choice.source, undefined, { backend });
  } catch {
    return;
  }
  const w = plan.weights;
  const held = w.deviceDtype === "F32" ? "as f32" : `as ${w.deviceDtype.split("+").filter((d) => d !== "F32").join("/")} blocks and f32`;
  setText("model-plan", `Plan: ${fmtBytes(plan.fileBytes)} to read, ${fmtBytes(w.deviceBytes)} of weights held ${held}, about ${fmtBytes(plan.hostLoadBytes)} while loading${plan.fits ? "." : ` — does not fit: ${plan.error?.message ?? ""}`}`);
}

/** Lets go of the current model first: its run, its worker and its adapter go with it. */
function dropModel() {
  state.training?.abandon();
  state.tuner?.dispose();
  state.tuner = null;
  state.adapter = "none";
  adapterChanged();
  resetResults();
  refreshButtons();
}

function showProgress(prog) {
  return (p) => {
    if (p.total) {
      prog.max = p.total;
      prog.value = p.loaded;
    }
    setText("model-status", `Loading ${p.file}: ${fmtBytes(p.loaded)}${p.total ? ` of ${fmtBytes(p.total)}` : ""}`);
  };
}

async function useModel(tuner, choice, t0) {
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
  workChanged();
  // With the model's tokenizer and task the check also counts tokens.
  await checkData();
}

function showModelFacts(t) {
  const { info, device } = t;
  $("model-facts").hidden = false;
  setText("fact-arch", `${info.architecture} (${info.modelType}, ${info.numLayers} layers, hidden size ${info.hiddenSize}, ${info.format} ${info.dtypes.join("/")})`);
  setText("fact-params", `${fmtInt(info.numParameters)} (${(info.numParameters / 1e6).toFixed(1)}M)`);
  const lim = deviceLimit(device);
  const held = info.deviceBlocks.length ? ` (${info.deviceBlocks.join("/")} kept quantized)` : "";
  setText("fact-memory", `${fmtBytes(info.estimatedBytes)} for the weights${held}; limit ${fmtBytes(lim.bytes)} (${lim.what})`);
  const dev = deviceName(device);
  setText("fact-device", dev);
  setText("stat-device", dev);
  $("device-notice").hidden = !device.notice;
  setText("device-notice", device.notice ? `Note: ${device.notice}.` : "");
}

function deviceName(device) {
  const threads = device.threads > 1 ? `, ${device.threads} threads` : ", one thread";
  return device.backend === "webgpu" ? `WebGPU${device.adapter ? ` on ${device.adapter}` : device.vendor ? ` (${device.vendor})` : ""}` : `CPU (WebAssembly${threads})`;
}

export function wireModel() {
  document.querySelectorAll('input[name="model-source"]').forEach((r) => r.addEventListener("change", updateSourceFields));
  for (const id of ["model-files", "model-folder"]) {
    $(id).addEventListener("change", () => {
      droppedModelFiles = null;
      showModelFiles(modelFiles());
    });
  }
  dropZone($("model-drop"), (files) => {
    droppedModelFiles = files;
    showModelFiles(files);
  });
  $("load-model").addEventListener("click", () => {
    // describeChoice throws for an empty Hub id or no files: say so (loadModel reports its own errors).
    let choice;
    try {
      choice = describeChoice();
    } catch (e) {
      showError("model", e);
      return;
    }
    loadModel(choice).catch(() => {});
  });
}
