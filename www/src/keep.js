// Section 6, Keep the work: downloading the adapter as a PEFT zip or a GGUF LoRA, loading an adapter onto the model, and the storage used.
import { WebPeftError } from "/web/dist/index.js";
import { $, setText, dropZone, saveAs } from "./dom.js";
import { fmtBytes } from "./format.js";
import { showError, clearError } from "./errors.js";
import { state, adapterChanged, takeAdapterOff } from "./state.js";
import { refreshButtons } from "./buttons.js";

/** A download's file name stem: the method and the model (`label`, default the loaded one's). */
export const fileStem = (method = $("method").value, label = state.source?.label) => `webpeft-${method}-${(label ?? "model").replace(/[^\w.-]+/g, "_").slice(0, 40)}`;

/** Saves what `exportFn` makes as `stem`.`ext`, saying what it is for. */
export async function download(exportFn, ext, whatFor, stem = fileStem()) {
  clearError("keep");
  try {
    const blob = await exportFn();
    const name = `${stem}.${ext}`;
    saveAs(blob, name);
    setText("keep-status", `Saved ${name} (${fmtBytes(blob.size)}): ${whatFor(name)}`);
  } catch (e) {
    showError("keep", e);
  }
}

const downloadAdapter = () => download(() => state.tuner.exportAdapter(), "zip", () => "the PEFT files and a README with the Python to load it.");

/** The LoRA adapter as llama.cpp's GGUF LoRA (the core refuses other methods with a clear error). */
const downloadGguf = () => download(() => state.tuner.exportAdapterGguf(), "gguf", (name) => `for llama.cpp (--lora ${name}) or Ollama (ADAPTER ./${name} in a Modelfile).`);

/** The paused run as a job that transformers' Trainer + PEFT continue on a GPU machine. */
const downloadGpuJob = () =>
  download(() => state.tuner.exportGpuJob(), "gpu-job.zip", () => "unzip it on a GPU machine and run `accelerate launch train.py` in webpeft-job/ (its README says what is inside).");

/** Loads an adapter (what `tuner.loadAdapter` takes) onto the model; `what` names it in the status line, `run` is its project's run (state.adapterRun). */
export async function putAdapter(files, what, run = null) {
  clearError("keep");
  if (!state.tuner) return showError("keep", new WebPeftError("input", "load the base model first (section 1)"));
  try {
    // The model holds one adapter at a time: the one on it now goes first.
    await takeAdapterOff();
    await state.tuner.loadAdapter(files);
    state.adapter = "loaded";
    adapterChanged(run);
    $("continue-adapter").checked = true;
    setText("keep-status", `Loaded ${what} onto the model.`);
  } catch (e) {
    showError("keep", e);
  } finally {
    refreshButtons();
  }
}

const loadAdapterFiles = (files) => putAdapter(files, `the adapter from ${files.map((f) => f.name).join(", ")}`);

/** This site's browser storage (OPFS projects and checkpoints, cached models) against its quota, as the browser estimates them. */
export async function showStorage() {
  const est = await navigator.storage?.estimate?.().catch(() => null);
  if (!est || !est.quota) return setText("storage-use", "");
  setText("storage-use", `Browser storage for this page: ${fmtBytes(est.usage ?? 0)} used of ${fmtBytes(est.quota)} (projects, checkpoints and cached models).`);
}

export function wireKeep() {
  showStorage();
  $("download-adapter").addEventListener("click", downloadAdapter);
  $("download-gguf").addEventListener("click", downloadGguf);
  $("download-gpu-job").addEventListener("click", downloadGpuJob);
  $("adapter-files").addEventListener("change", () => loadAdapterFiles([...$("adapter-files").files]));
  dropZone($("adapter-drop"), loadAdapterFiles);
}
