// Section 3, Method: the task and method settings, their defaults for a model, and the train options they make.
import { $, setText } from "./dom.js";
import { state, workChanged } from "./state.js";
import { DEFAULTS, METHOD_LR } from "./presets.js";
import { isEncoder, updateEstimate } from "./estimate.js";
import { checkData, showEvalSplit, showEditors, heldOutCount } from "./data.js";
import { fitTryToTask } from "./compare.js";

const defaultLr = () => METHOD_LR[$("method").value] ?? DEFAULTS[$("task").value].lr;

/** Sets task, learning rate and shape for the loaded model (the user can still change them). */
export function applyModelDefaults(t) {
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
  $("lr").value = defaultLr();
  $("epochs").value = d.epochs;
  $("batch").value = d.batch;
  $("seq-len").value = d.seqLen;
  $("eval-every").value = d.evalEvery;
  fitTryToTask($("task").value === "causal-lm");
  showEditors();
  updateEstimate();
}

export function updateMethodFields() {
  const m = $("method").value;
  document.querySelectorAll(".dp-only").forEach((el) => (el.hidden = !$("dp").checked));
  document.querySelectorAll(".lora-only").forEach((el) => (el.hidden = m !== "lora" && m !== "dora"));
  document.querySelectorAll(".prompt-only").forEach((el) => (el.hidden = m !== "prompt" && m !== "prefix"));
}

const num = (id) => Number($(id).value);

/** The package's train options from the form (the data section's held-out share included). */
export function readOptions() {
  const o = {
    task: $("task").value,
    method: $("method").value,
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
  Object.assign(o, methodOptions(o.method));
  // delta 1e-5 is below 1/n for any dataset a tab trains on (n < 100,000), as DP needs.
  if ($("dp").checked) o.dp = { targetEpsilon: num("dp-epsilon"), delta: 1e-5, maxGradNorm: num("dp-clip") };
  if (state.baseModel) o.baseModel = state.baseModel;
  return o;
}

/** The options only some methods take: LoRA/DoRA's rank and targets, prompt/prefix tuning's virtual tokens. */
function methodOptions(method) {
  if (method === "lora" || method === "dora") {
    const o = { r: num("rank"), alpha: num("alpha"), dropout: num("dropout") };
    const t = $("targets").value.split(",").map((s) => s.trim()).filter(Boolean);
    if (t.length) o.targets = t;
    return o;
  }
  if (method === "prompt" || method === "prefix") return { virtualTokens: num("virtual-tokens") };
  return {};
}

/** Puts saved options back in the form (a resumed run shows the settings it trains with). */
export function writeOptions(o) {
  // Saved settings (a resumed run's) are the person's: suggestions do not replace them.
  touched = true;
  const set = (id, v) => v !== undefined && ($(id).value = v);
  set("task", o.task); set("method", o.method); set("lr", o.lr); set("epochs", o.epochs);
  set("batch", o.batch); set("seq-len", o.seqLen); set("grad-accum", o.gradAccum); set("schedule", o.schedule);
  set("warmup", o.warmup); set("eval-split", o.evalSplit); set("seed", o.seed); set("steps", o.steps ?? 0);
  set("eval-every", o.evalEvery ?? 0); set("rank", o.r); set("alpha", o.alpha); set("dropout", o.dropout);
  set("virtual-tokens", o.virtualTokens);
  $("dp").checked = !!o.dp;
  if (o.dp) { set("dp-epsilon", o.dp.targetEpsilon); set("dp-clip", o.dp.maxGradNorm); }
  $("targets").value = o.targets ? o.targets.join(", ") : "";
  showEvalSplit();
  updateMethodFields();
}

// One-button settings: the core suggests them for the model and the checked data
// (`tuner.suggestOptions`) and they fill the form, with one line saying what and why, until
// the person changes a setting; "Use the suggested settings again" puts them back.
const SUGGESTED = ["method", "rank", "alpha", "lr", "epochs", "batch", "seq-len", "warmup", "eval-every", "steps"];
let touched = false;

async function suggestSettings() {
  const t = state.tuner;
  const d = state.data;
  if (!t || !d?.check?.ok || state.training || typeof t.suggestOptions !== "function") return;
  let s;
  try {
    // The page's own held-out rows, so the sentence counts the examples the run trains on.
    s = await t.suggestOptions({ rows: d.check.rows, task: $("task").value, heldOut: heldOutCount() });
  } catch {
    return; // the form keeps its values
  }
  if (state.tuner !== t || state.data !== d) return;
  state.suggestion = s;
  if (!touched) applySuggestion(s);
  showSuggestion();
}

function applySuggestion(s) {
  const o = s.options;
  const set = (id, v) => v !== undefined && ($(id).value = v);
  set("method", o.method); set("rank", o.r); set("alpha", o.alpha); set("lr", o.lr); set("epochs", o.epochs);
  set("batch", o.batch); set("seq-len", o.seqLen); set("warmup", o.warmup); set("eval-every", o.evalEvery ?? 0);
  set("steps", o.steps ?? 0);
  updateMethodFields();
  updateEstimate();
  workChanged();
}

function showSuggestion() {
  const s = state.suggestion;
  setText("settings-why", s ? (touched ? `Your settings are used. Suggested for this model and data: ${s.why}` : `Start trains with settings picked for this model and data: ${s.why} Change any of them below.`) : "");
  $("use-suggested").hidden = !s || !touched;
}

/** The settings as a fresh page has them: the form's own defaults, then the loaded model's; no suggestion until there is data. */
export function resetOptions() {
  for (const el of [...$("method-section").querySelectorAll("input, select"), $("eval-split")]) {
    if (el.type === "checkbox") el.checked = el.defaultChecked;
    else if (el.tagName === "SELECT") el.selectedIndex = Math.max(0, [...el.options].findIndex((o) => o.defaultSelected));
    else el.value = el.defaultValue;
  }
  touched = false;
  state.suggestion = null;
  showSuggestion();
  if (state.tuner) applyModelDefaults(state.tuner);
  else updateEstimate();
  showEvalSplit();
  updateMethodFields();
}

export function wireMethod() {
  document.addEventListener("webpeft:data-checked", () => suggestSettings());
  // The held-out rows change what is trained on: suggest again for the rest.
  for (const id of ["eval-split", "seed"]) $(id).addEventListener("change", () => suggestSettings());
  // A person's edit (not the page's own writes, which fire no events) keeps their settings.
  for (const id of SUGGESTED) {
    for (const kind of ["input", "change"]) {
      $(id).addEventListener(kind, () => {
        touched = true;
        showSuggestion();
      });
    }
  }
  $("use-suggested").addEventListener("click", () => {
    touched = false;
    if (state.suggestion) applySuggestion(state.suggestion);
    showSuggestion();
    $("lr").focus();
  });
  $("task").addEventListener("change", () => {
    applyTaskDefaults();
    checkData();
  });
  $("method").addEventListener("change", () => {
    $("lr").value = defaultLr();
    updateMethodFields();
    updateEstimate();
  });
  $("dp").addEventListener("change", updateMethodFields);
}
