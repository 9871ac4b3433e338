// Section 6, Keep the work: downloading the adapter as a PEFT zip or a GGUF LoRA, and loading an adapter's files onto the model.
import { WebPeftError } from "/web/dist/index.js";
import { $, setText, dropZone, saveAs } from "./dom.js";
import { fmtBytes } from "./format.js";
import { showError, clearError } from "./errors.js";
import { state } from "./state.js";
import { refreshButtons } from "./buttons.js";

const fileStem = () => `webpeft-${$("method").value}-${(state.source?.label ?? "model").replace(/[^\w.-]+/g, "_").slice(0, 40)}`;

async function downloadAdapter() {
  clearError("keep");
  try {
    const zip = await state.tuner.exportAdapter();
    const name = `${fileStem()}.zip`;
    saveAs(zip, name);
    setText("keep-status", `Saved ${name} (${fmtBytes(zip.size)}): the PEFT files and a README with the Python to load it.`);
  } catch (e) {
    showError("keep", e);
  }
}

/** The LoRA adapter as llama.cpp's GGUF LoRA (the core refuses other methods with a clear error). */
async function downloadGguf() {
  clearError("keep");
  try {
    const gguf = await state.tuner.exportAdapterGguf();
    const name = `${fileStem()}.gguf`;
    saveAs(gguf, name);
    setText("keep-status", `Saved ${name} (${fmtBytes(gguf.size)}): for llama.cpp (--lora ${name}) or Ollama (ADAPTER ./${name} in a Modelfile).`);
  } catch (e) {
    showError("keep", e);
  }
}

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

export function wireKeep() {
  $("download-adapter").addEventListener("click", downloadAdapter);
  $("download-gguf").addEventListener("click", downloadGguf);
  $("adapter-files").addEventListener("change", () => loadAdapterFiles([...$("adapter-files").files]));
  dropZone($("adapter-drop"), loadAdapterFiles);
}
