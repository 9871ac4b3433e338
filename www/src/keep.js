// Section 6, Keep the work: downloading the adapter as a PEFT zip or a GGUF LoRA, and loading an adapter's files onto the model.
import { WebPeftError } from "/web/dist/index.js";
import { $, setText, dropZone, saveAs } from "./dom.js";
import { fmtBytes } from "./format.js";
import { showError, clearError } from "./errors.js";
import { state, adapterChanged } from "./state.js";
import { refreshButtons } from "./buttons.js";

const fileStem = () => `webpeft-${$("method").value}-${(state.source?.label ?? "model").replace(/[^\w.-]+/g, "_").slice(0, 40)}`;

/** Saves what `exportFn` makes under the file stem with `ext`, saying what it is for. */
async function download(exportFn, ext, whatFor) {
  clearError("keep");
  try {
    const blob = await exportFn();
    const name = `${fileStem()}.${ext}`;
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

async function loadAdapterFiles(files) {
  clearError("keep");
  if (!state.tuner) return showError("keep", new WebPeftError("input", "load the base model first (section 1)"));
  try {
    await state.tuner.loadAdapter(files);
    state.adapter = "loaded";
    adapterChanged();
    $("continue-adapter").checked = true;
    setText("keep-status", `Loaded the adapter from ${files.map((f) => f.name).join(", ")}.`);
  } catch (e) {
    showError("keep", e);
  } finally {
    refreshButtons();
  }
}

/** This site's browser storage (OPFS checkpoints, cached models) against its quota, as the browser estimates them. */
export async function showStorage() {
  const est = await navigator.storage?.estimate?.().catch(() => null);
  if (!est || !est.quota) return setText("storage-use", "");
  setText("storage-use", `Browser storage for this page: ${fmtBytes(est.usage ?? 0)} used of ${fmtBytes(est.quota)} (checkpoints and cached models).`);
}

export function wireKeep() {
  showStorage();
  $("download-adapter").addEventListener("click", downloadAdapter);
  $("download-gguf").addEventListener("click", downloadGguf);
  $("download-gpu-job").addEventListener("click", downloadGpuJob);
  $("adapter-files").addEventListener("change", () => loadAdapterFiles([...$("adapter-files").files]));
  dropZone($("adapter-drop"), loadAdapterFiles);
}
