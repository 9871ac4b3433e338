// Section 6, Keep the work: the current work as a project in this browser's OPFS (the model choice, the data, the settings, and each finished or stopped run with its chart, metrics and adapter), saved as the person works; opening, renaming and starting a new project; its runs shown, loaded onto the model and downloaded.
import { WebPeftError } from "/web/dist/index.js";
import { zipSync } from "fflate";
import { $, setText } from "./dom.js";
import { explain, showError, clearError } from "./errors.js";
import { state, takeAdapterOff } from "./state.js";
import { refreshButtons } from "./buttons.js";
import { debounced, oneAtATime } from "./debounce.js";
import { opfsDir, writeFile, readFile } from "./opfs.js";
import { showStorage, putAdapter, download, fileStem } from "./keep.js";
import { selectModel, loadModel } from "./model.js";
import { readOptions, writeOptions, resetOptions } from "./method.js";
import { useData, clearData } from "./data.js";
import { importExamples, flushExamples, resetExamples } from "./examples.js";
import { importConversations, flushConversations, resetConversations } from "./conversations.js";
import { showRun } from "./train.js";
import { clearPanes } from "./compare.js";
import { newConversation, restoreConversation, chatTranscript } from "./chat.js";
import { transcriptJson, readTranscript } from "./transcript.js";
import { chartSeries } from "./chart.js";
import { resultsSummary } from "./results.js";
import { refreshList, wireProjectList } from "./project-list.js";

// The current work is a project: once there is data (or a run), the model choice, the data, the
// settings and the chat's conversation are saved into it a moment after each change, and each run
// that ends (finished or stopped) adds its record and its adapter. Opening a project makes it the
// current one.
//
// The list of all projects, their deletion and the move of the adapter earlier versions kept are
// project-list.js's.
//
// OPFS: webpeft-projects/<id>/{project.json, data-<k>.txt, chat-<k>.json, run-<n>.zip}.
// project.json names the data and chat files and the runs' adapters and is written after them, so
// a reload in the middle of a save finds the project as it was before; a changed text goes into a
// new file, and the old one is removed once project.json names the new one.
export const DIR = "webpeft-projects";
export const VERSION = 1;
// The adapter files of a run kept by an earlier version of this page (project-list.js moves it into a project).
export const LEGACY_FILES = ["adapter_config.json", "adapter_model.safetensors", "webpeft.json"];
const METHODS = { lora: "LoRA", dora: "DoRA", bitfit: "BitFit", ia3: "(IA)³", prompt: "prompt tuning", prefix: "prefix tuning" };

// While a project opens (its model, data and settings are put back) or a new one starts: nothing is saved meanwhile.
let opening = false;
// An Open or New project in progress (from the click: the current work is saved before `opening`).
let openingNow = false;
// What the current project's data and chat files hold ({ id, file, text } each), so that an unchanged text is not written again.
let written = { data: {}, chat: {} };
// Saves, deletions and the list's refreshes run one after the other.
export const queued = oneAtATime();
// Whether the last save of the current work was written (a full quota: not).
let lastSaveOk = true;
// The work is saved this long after the last change.
const saving = debounced(() => queued(saveNow));

/** The folder of all projects in OPFS, and one project's folder. */
export const projectsDir = (create = false) => opfsDir(DIR, create);
export const projectDir = async (id, create = false) => (await projectsDir(create)).getDirectoryHandle(id, { create });
/** Names a run's adapter on the model (state.adapterRun): "<project id>/<run n>". */
export const runKey = (p, run) => `${p.id}/${run.n}`;
export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
export const when = (iso) => new Date(iso).toLocaleString();

export function newProject() {
  const now = new Date().toISOString();
  const id = `p-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
  return { version: VERSION, id, name: "", named: false, createdAt: now, updatedAt: now, model: null, data: null, settings: null, runs: [] };
}

/** The loaded model as a project keeps it (how to load it again), or null when none is loaded. */
function currentModel() {
  if (!state.tuner || !state.modelKey) return null;
  return { key: state.modelKey, label: state.source?.label ?? state.modelKey, backend: $("backend").value };
}

/** A project's name until the person gives it one: what it trains on, and on which model. */
function defaultName(p) {
  const d = p.data;
  const labels = state.labels?.length ? `${state.labels.slice(0, 3).join(", ")}${state.labels.length > 3 ? ", …" : ""}` : "typed examples";
  const what = !d ? "No data" : d.editor === "classes" ? labels : d.editor === "chat" ? "Typed conversations" : d.name.replace(/\.[^.]*$/, "");
  return p.model ? `${what} on ${p.model.label}` : what;
}

/** Puts the current work into its project (a new one once there is data) and writes it. */
async function save() {
  if (opening) return;
  if (!state.project) {
    if (!state.data) return;
    state.project = newProject();
  }
  const p = state.project;
  // Without a loaded model (local files not picked again yet, a failed load) the project keeps its own.
  p.model = currentModel() ?? p.model;
  p.data = state.data ? { name: state.data.name, editor: state.data.editor, file: p.data?.file ?? null } : null;
  p.settings = { options: readOptions(), checkpointEvery: Number($("checkpoint-every").value) };
  if (!p.named) p.name = defaultName(p);
  p.updatedAt = new Date().toISOString();
  const chat = chatTranscript();
  await write(p, state.data?.text, chat && transcriptJson(chat));
}

/** Writes project `p` to OPFS with its data and chat texts (each when it changed): those files first, project.json last. */
async function write(p, dataText, chatText) {
  const dir = await projectDir(p.id, true);
  if (p.data) p.data.file = await writePart(dir, p, "data", p.data.file, dataText);
  p.chat = await writePart(dir, p, "chat", p.chat ?? null, chatText);
  await writeFile(dir, "project.json", JSON.stringify(p));
  // Data and chat files project.json no longer names.
  for await (const [name, h] of dir.entries()) {
    if (h.kind === "file" && /^(data|chat)-/.test(name) && name !== p.data?.file && name !== p.chat) await dir.removeEntry(name).catch(() => {});
  }
}

/** Writes `text` as project `p`'s `kind` file (data-<k>.txt, chat-<k>.json) unless its file `file` holds it already; returns the file's name (null: no text). */
async function writePart(dir, p, kind, file, text) {
  if (text === null || text === undefined) return null;
  const w = written[kind];
  if (w.id === p.id && w.file === file && w.text === text) return file;
  const name = `${kind}-${Date.now().toString(36)}.${kind === "data" ? "txt" : "json"}`;
  await writeFile(dir, name, text);
  written[kind] = { id: p.id, file: name, text };
  return name;
}

/** What a failed write says: a full quota in words a person can act on. */
function saveFailed(e, what) {
  const full = e?.name === "QuotaExceededError";
  const why = full
    ? "this browser's storage for the page is full. Delete projects you no longer need (Projects in this browser) or download what you want to keep; nothing on the page is lost while it stays open"
    : explain(e);
  setText("project-msg", `${what} was not saved in this browser: ${why}.`);
  console.error(e);
}

async function saveNow() {
  try {
    await save();
    lastSaveOk = true;
    clearError("project");
  } catch (e) {
    lastSaveOk = false;
    saveFailed(e, `The project “${state.project?.name ?? "current work"}”`);
  }
  showProject();
  await refreshList();
  showStorage();
}

/** Saves the current work now (a run starts with its project saved, so its checkpoint can name it). */
export async function flushProject() {
  saving.cancel();
  await queued(saveNow);
}

/**
 * Adds a run that ended (finished or stopped) to the current project (a new one if there is
 * none): its settings, chart, metrics and time, and its adapter (the package's zip) next to it.
 * Returns the run's record (its held-out results are added by `saveRunResults`).
 */
export function saveRun(job, summary, seconds) {
  return queued(async () => {
    state.project ??= newProject();
    const p = state.project;
    const n = Math.max(0, ...p.runs.map((r) => r.n)) + 1;
    const run = {
      n,
      at: new Date().toISOString(),
      reason: summary.reason,
      steps: summary.steps,
      total: job.total,
      seconds,
      loss: summary.loss ?? null,
      eval: summary.eval ?? null,
      epsilon: job.lastEpsilon ?? null,
      settings: job.options,
      dataName: job.data.name,
      model: currentModel(),
      series: chartSeries(),
      results: null,
      adapter: null,
    };
    try {
      const zip = await state.tuner.exportAdapter();
      await writeFile(await projectDir(p.id, true), `run-${n}.zip`, zip);
      run.adapter = `run-${n}.zip`;
    } catch (e) {
      saveFailed(e, `Run ${n}'s adapter (it is still on the model: Download adapter keeps it)`);
    }
    p.runs.push(run);
    try {
      await save();
      if (run.adapter) {
        clearError("project");
        setText("keep-status", `Run ${n} and its adapter are saved in the project “${p.name}” in this browser; download the adapter to use it elsewhere.`);
      } else setText("keep-status", `Run ${n} is saved in the project “${p.name}” without its adapter; download the adapter to keep it.`);
    } catch (e) {
      saveFailed(e, `Run ${n} of “${p.name}”`);
    }
    showProject();
    await refreshList();
    showStorage();
    return run;
  });
}

/** Adds a run's held-out results (results.js's record of what it showed) to its project. */
export function saveRunResults(run, results) {
  run.results = results;
  if (state.project?.runs.includes(run)) return queued(saveNow);
}

/** Why a project's file could not be read, in words (its path goes before). */
export const unreadable = (e) => (e?.name === "NotFoundError" ? "it is missing" : e instanceof SyntaxError ? `it is not valid JSON (${e.message})` : explain(e));

/** Reads project `id` (its project.json); throws when it is missing or not a project this page reads. */
export async function readProject(id) {
  const p = JSON.parse(await (await readFile(await projectDir(id), "project.json")).text());
  if (p?.version !== VERSION || typeof p.name !== "string" || !Array.isArray(p.runs)) throw new Error("not a project file this page can read");
  p.id = id;
  return p;
}

const readData = async (p) => (p.data?.file ? (await readFile(await projectDir(p.id), p.data.file)).text() : null);

/** Makes project `id` the current one without putting anything back (a resumed run restores its own). */
export async function adoptProject(id) {
  if (!id) return;
  try {
    const p = await readProject(id);
    written = { data: { id, file: p.data?.file ?? null, text: await readData(p) }, chat: {} };
    state.project = p;
  } catch {
    // Deleted meanwhile: the run goes into a new project.
  }
  showProject();
  queued(refreshList);
}

// ---- Opening a project -------------------------------------------------------------------

export async function openProject(id) {
  if (openingNow) return;
  openingNow = true;
  try {
    await openNow(id);
  } finally {
    openingNow = false;
  }
}

/**
 * Saves the current work (what was just typed in an editor too) before another project takes the
 * page; throws when it could not be saved, so that the page keeps it (`then`: what to do again).
 */
async function saveFirst(then) {
  await flushExamples();
  await flushConversations();
  await saving.flush();
  await queued.idle();
  if (!lastSaveOk) throw new Error(`The current project could not be saved (see This project), so the page keeps it: make room in this browser's storage, then ${then} again.`);
}

async function openNow(id) {
  clearError("projects");
  if (state.training) return showError("projects", new WebPeftError("input", "stop the run first (Training), then open the project"));
  try {
    await saveFirst("open the project");
  } catch (e) {
    return showError("projects", e);
  }
  let p;
  let text;
  try {
    p = await readProject(id);
    text = await readData(p);
  } catch (e) {
    showError("projects", new WebPeftError("io", `${DIR}/${id} could not be read: ${explain(e)}`));
    return;
  }
  const chat = await readChat(p);
  opening = true;
  try {
    state.project = p;
    written = { data: { id, file: p.data?.file ?? null, text }, chat: { id, file: p.chat ?? null, text: chat.text } };
    showProject();
    setText("projects-status", `Opening “${p.name}”…`);
    await restoreModel(p.model);
    if (p.settings) {
      writeOptions(p.settings.options);
      $("checkpoint-every").value = p.settings.checkpointEvery;
    }
    await restoreData(p.data, text);
    showRun(p.runs.at(-1) ?? null, p.name);
    if (chat.transcript) restoreConversation(chat.transcript);
    else newConversation();
    const runs = p.runs.length ? ` Its last run is shown under Training; load a run's adapter below to try it.` : "";
    const talk = chat.transcript ? " Its conversation is back under Try it." : "";
    setText("projects-status", `Opened “${p.name}”.${runs}${talk}`);
    // An unreadable conversation is said, and the rest of the project opens.
    if (chat.error) setText("projects-msg", chat.error);
  } catch (e) {
    setText("projects-status", "");
    showError("projects", e);
  } finally {
    opening = false;
    // What opening put back is the project as saved: nothing to save.
    saving.cancel();
  }
  showProject();
  await queued(refreshList);
  $("project-title").focus();
}

/** Project `p`'s saved conversation: its file's text and the transcript in it, or why it could not be read (`error`). */
async function readChat(p) {
  if (!p.chat) return { text: null, transcript: null, error: null };
  let text = null;
  try {
    text = await (await readFile(await projectDir(p.id), p.chat)).text();
    return { text, transcript: readTranscript(text), error: null };
  } catch (e) {
    const error = `${DIR}/${p.id}/${p.chat} could not be read: ${unreadable(e)}. The rest of the project opened; its saved conversation is not shown, and the project's next save leaves it out.`;
    return { text, transcript: null, error };
  }
}

/** Loads the project's model as the model section would (bundled or Hub); local files the person picks again. */
async function restoreModel(m) {
  if (!m) return;
  // The same model stays loaded: only the adapter of the work before goes.
  if (state.tuner && state.modelKey === m.key) return dropAdapter();
  selectModel(m.key, m.backend);
  if (m.key.startsWith("files:")) {
    setText("model-status", `This project's model came from files on this computer (${m.label}): choose them again above and press Load model; files cannot be reopened from the browser's storage.`);
    return;
  }
  await loadModel().catch(() => {}); // the model section shows its own error; the data and settings still come back
}

/** Takes the adapter of the work before off the model; the model stays loaded. */
async function dropAdapter() {
  if (state.adapter === "none") return;
  try {
    await takeAdapterOff();
  } catch (e) {
    showError("model", e);
  }
  refreshButtons();
}

/** Puts the project's data back where it was: in its editor, else as the file it was. */
async function restoreData(d, text) {
  if (!d || text === null) return clearData();
  if (d.editor === "classes" && (await importExamples(d.name, text))) return;
  if (d.editor === "chat" && (await importConversations(d.name, text))) return;
  await useData(d.name, text);
}

// ---- A new project ------------------------------------------------------------------------

/**
 * Saves the current work, then starts afresh on the loaded model (which stays loaded): no data,
 * the default settings, no run or results shown, no adapter on the model. As on a fresh page,
 * the new work becomes a project once it has data; the one before stays listed, to Open again.
 */
export async function startNewProject() {
  if (openingNow) return;
  clearError("projects");
  if (state.training) return showError("projects", new WebPeftError("input", "stop the run first (Training), then start a new project"));
  openingNow = true;
  try {
    await saveFirst("press New project");
    const before = state.project;
    // Nothing is saved while the page is cleared: the work before is saved, the new one is empty.
    opening = true;
    try {
      state.project = null;
      written = { data: {}, chat: {} };
      await dropAdapter();
      resetExamples();
      resetConversations();
      clearData();
      resetOptions();
      showRun(null);
      clearPanes();
      newConversation();
    } finally {
      opening = false;
      saving.cancel();
    }
    showProject();
    await queued(refreshList);
    const kept = before ? `“${before.name}” is saved (Open below brings it back). ` : "";
    const model = state.tuner ? `${state.source.label} is still loaded; ` : "";
    setText("projects-status", `${kept}A new project started: ${model}choose data in section 2 to begin.`);
  } catch (e) {
    return showError("projects", e);
  } finally {
    openingNow = false;
  }
  $("data-title").focus();
}

/** Deletes project `id` from OPFS; the open one's work stays on the page (a change after this saves it as a new project). True if it was the open one. */
export async function deleteProject(id) {
  const wasOpen = state.project?.id === id;
  if (wasOpen) saving.cancel();
  await queued(async () => {
    await (await projectsDir()).removeEntry(id, { recursive: true });
    if (state.project?.id === id) {
      state.project = null;
      written = { data: {}, chat: {} };
    }
  });
  showProject();
  return wasOpen;
}

// ---- This project: its name and its runs --------------------------------------------------

function showProject() {
  const p = state.project;
  const name = $("project-name");
  name.disabled = !p;
  if (document.activeElement !== name) name.value = p?.name ?? "";
  setText("project-status", p ? `Saved in this browser, ${when(p.updatedAt)}.` : "Not saved yet: your work becomes a project once you choose data.");
  const list = $("project-runs");
  list.hidden = !p?.runs.length;
  list.replaceChildren(...(p?.runs ?? []).map((run) => runItem(p, run)).reverse());
  refreshButtons();
}

/** A saved run's settings and metrics in one line. */
function runText(run) {
  const o = run.settings ?? {};
  const parts = [
    run.reason === "completed" ? "finished" : run.reason === "cancelled" ? "stopped" : run.reason ? `ended (${run.reason})` : "kept by an earlier version of this page",
    run.steps !== null && run.steps !== undefined ? plural(run.steps, "step") : null,
    o.method ? `${METHODS[o.method] ?? o.method}${o.r ? ` r ${o.r}` : ""}${o.lr ? `, learning rate ${o.lr}` : ""}${o.dp ? ", private (DP-SGD)" : ""}` : null,
    run.dataName ? `on ${run.dataName}` : null,
    run.loss !== null && run.loss !== undefined ? `last loss ${run.loss.toFixed(4)}` : null,
    run.eval ? `eval loss ${run.eval.loss.toFixed(4)}${run.eval.accuracy !== undefined ? `, accuracy ${Math.round(run.eval.accuracy * 100)}%` : ""}${run.eval.perplexity !== undefined ? `, perplexity ${run.eval.perplexity.toFixed(1)}` : ""}` : null,
    run.results ? resultsSummary(run.results) : null,
    when(run.at),
  ];
  return parts.filter(Boolean).join(" · ");
}

/** A secondary button with `cls` (buttons.js enables some by class) that calls `onClick`. */
export function button(text, cls, onClick) {
  const b = Object.assign(document.createElement("button"), { type: "button", className: `secondary ${cls}`, textContent: text });
  b.addEventListener("click", onClick);
  return b;
}

function runItem(p, run) {
  const li = document.createElement("li");
  const head = document.createElement("p");
  head.append(Object.assign(document.createElement("strong"), { textContent: `Run ${run.n}` }), `: ${runText(run)}`);
  const row = Object.assign(document.createElement("div"), { className: "row" });
  row.append(button(`Show run ${run.n}`, "show-run", () => {
    showRun(run, p.name);
    setText("keep-status", `Run ${run.n} is shown under Training (section 4).`);
  }));
  if (run.adapter || run.adapterDir) {
    const stem = `${fileStem(run.settings?.method, run.model?.label ?? p.model?.label)}-run-${run.n}`;
    const what = run.adapter ? "the PEFT files and a README with the Python to load it" : "the PEFT files and webpeft.json, as an earlier version of this page kept them";
    row.append(
      button(`Load run ${run.n}'s adapter`, "load-run", () => loadRun(p, run)),
      button(`Download run ${run.n}'s adapter`, "download-run", () => download(() => runZip(p, run), "zip", () => `run ${run.n}'s adapter: ${what}.`, stem)),
    );
  }
  li.append(head, row);
  if (!run.adapter && !run.adapterDir) li.append(Object.assign(document.createElement("p"), { className: "hint", textContent: "Its adapter could not be saved." }));
  return li;
}

/** A saved run's adapter as `tuner.loadAdapter` takes it: the zip saved with the run, or the files an earlier version of the page kept. */
async function runAdapter(p, run) {
  try {
    const dir = await projectDir(p.id);
    if (run.adapter) return await readFile(dir, run.adapter);
    const sub = await dir.getDirectoryHandle(run.adapterDir);
    return Object.fromEntries(await Promise.all(LEGACY_FILES.map(async (f) => [f, await readFile(sub, f)])));
  } catch (e) {
    throw new WebPeftError("io", `run ${run.n}'s adapter could not be read from ${DIR}/${p.id}: ${explain(e)}`);
  }
}

/** A saved run's adapter as a zip to download, without loading it: kept files are zipped here (the model's exportAdapter is not needed). */
async function runZip(p, run) {
  const a = await runAdapter(p, run);
  if (a instanceof Blob) return a;
  const files = await Promise.all(Object.entries(a).map(async ([name, f]) => [name, new Uint8Array(await f.arrayBuffer())]));
  return new Blob([zipSync(Object.fromEntries(files))], { type: "application/zip" });
}

/** Puts a saved run's adapter on the model (which must be the run's model). */
async function loadRun(p, run) {
  const m = run.model ?? p.model;
  if (state.tuner && m && state.modelKey !== m.key) {
    return showError("keep", new WebPeftError("input", `run ${run.n} was trained on ${m.label}: load that model first (Open the project loads it)`));
  }
  let files;
  try {
    files = await runAdapter(p, run);
  } catch (e) {
    return showError("keep", e);
  }
  await putAdapter(files, `run ${run.n}'s adapter (“${p.name}”)`, runKey(p, run));
}

export function wireProjects() {
  // After a change, and after the data's check (the default name reads the classes it found).
  for (const kind of ["webpeft:work-changed", "webpeft:data-checked"]) document.addEventListener(kind, (e) => saving.soon(e.detail?.now ? 0 : 800));
  for (const kind of ["input", "change"]) $("method-section").addEventListener(kind, () => saving.soon(800));
  $("eval-split").addEventListener("input", () => saving.soon(800));
  $("project-name").addEventListener("input", () => {
    const p = state.project;
    if (!p) return;
    const v = $("project-name").value.trim();
    p.named = !!v;
    p.name = v || defaultName(p);
    saving.soon(800);
  });
  $("project-name").addEventListener("change", () => {
    // An emptied name goes back to the default one.
    if (state.project && !$("project-name").value.trim()) $("project-name").value = state.project.name;
  });
  $("new-project").addEventListener("click", startNewProject);
  showProject();
  wireProjectList();
}
