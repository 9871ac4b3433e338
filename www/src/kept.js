// Section 6, Keep the work: the adapter of the last finished (or stopped) run, kept in this
// browser's private storage (OPFS), so a reload or a later visit can put it back on the model
// without a download.
import { WebPeftError } from "/web/dist/index.js";
import { $, setText } from "./dom.js";
import { showError, clearError } from "./errors.js";
import { state, adapterChanged } from "./state.js";
import { refreshButtons } from "./buttons.js";
import { showStorage } from "./keep.js";
import { writeFile, readFile } from "./opfs.js";

const DIR = "webpeft-kept-adapter";
const FILES = ["adapter_config.json", "adapter_model.safetensors", "webpeft.json"];

async function keptDir(create = false) {
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle(DIR, { create });
}

/** The kept adapter's record ({ model, method, steps, loss, savedAt }), or null. */
async function readMeta() {
  try {
    return JSON.parse(await (await readFile(await keptDir(), "meta.json")).text());
  } catch {
    return null;
  }
}

/** Shows the kept adapter, if there is one, with what it was trained on. */
export async function showKept() {
  const meta = await readMeta();
  $("kept-adapter").hidden = !meta;
  if (meta) {
    const loss = meta.loss !== undefined && meta.loss !== null ? `, last loss ${Number(meta.loss).toFixed(4)}` : "";
    setText("kept-info", `Kept in this browser: a ${meta.method} adapter trained on ${meta.model} (${meta.steps} steps${loss}), ${new Date(meta.savedAt).toLocaleString()}.`);
  }
  refreshButtons();
}

/** Keeps the model's adapter after a run, replacing the one kept before. */
export async function keepAdapter(job, summary) {
  try {
    const files = await state.tuner.exportAdapterFiles();
    const dir = await keptDir(true);
    for (const name of FILES) await writeFile(dir, name, files[name]);
    const meta = { model: state.source?.label ?? "the model", modelKey: state.modelKey, method: job.options.method, steps: summary.steps, loss: summary.loss ?? null, savedAt: new Date().toISOString() };
    await writeFile(dir, "meta.json", JSON.stringify(meta));
  } catch (e) {
    // Keeping is a convenience: the adapter is still on the model and can be downloaded.
    showError("keep", e);
  }
  await showKept();
  showStorage();
}

async function loadKept() {
  clearError("keep");
  if (!state.tuner) return showError("keep", new WebPeftError("input", "load the base model first (section 1)"));
  try {
    const dir = await keptDir();
    const files = {};
    for (const name of FILES) files[name] = new Uint8Array(await (await readFile(dir, name)).arrayBuffer());
    await state.tuner.loadAdapter(files);
    state.adapter = "loaded";
    adapterChanged();
    $("continue-adapter").checked = true;
    setText("keep-status", "Loaded the kept adapter onto the model.");
  } catch (e) {
    showError("keep", e);
  } finally {
    refreshButtons();
  }
}

async function forgetKept() {
  try {
    const root = await navigator.storage.getDirectory();
    await root.removeEntry(DIR, { recursive: true });
  } catch {
    // nothing kept
  }
  setText("keep-status", "The kept adapter was removed from this browser.");
  await showKept();
  showStorage();
}

export function wireKept() {
  $("load-kept").addEventListener("click", loadKept);
  $("forget-kept").addEventListener("click", forgetKept);
  showKept();
}
