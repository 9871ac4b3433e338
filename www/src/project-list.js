// Section 6, Keep the work: the projects in this browser (OPFS) listed with Open and Delete (a modal dialog confirms), an unreadable one named; and the adapter earlier versions of the page kept, moved into a project.
import { WebPeftError } from "/web/dist/index.js";
import { $, setText } from "./dom.js";
import { fmtBytes } from "./format.js";
import { explain, showError, clearError } from "./errors.js";
import { state } from "./state.js";
import { refreshButtons } from "./buttons.js";
import { opfsDir, removeOpfsDir, writeFile, readFile, dirBytes } from "./opfs.js";
import { showStorage } from "./keep.js";
import { DIR, LEGACY_FILES, projectsDir, projectDir, newProject, readProject, unreadable, openProject, deleteProject, queued, button, plural, when } from "./projects.js";

// The one adapter that earlier versions of this page kept (the last run's).
const LEGACY = "webpeft-kept-adapter";

let listed = "";

/** Lists the projects in OPFS, newest change first; a project file that cannot be read is named, with a Delete. */
export async function refreshList() {
  let dir = null;
  try {
    dir = await projectsDir();
  } catch (e) {
    if (e?.name !== "NotFoundError") showError("projects", e);
  }
  const items = [];
  if (dir) {
    for await (const [id, h] of dir.entries()) {
      if (h.kind !== "directory") continue;
      const bytes = await dirBytes(h).catch(() => null);
      try {
        items.push({ id, p: await readProject(id), bytes });
      } catch (e) {
        items.push({ id, bytes, error: `${DIR}/${id}/project.json could not be read: ${unreadable(e)}. The other projects are not affected; delete this one to free its space.` });
      }
    }
  }
  items.sort((a, b) => (b.p?.updatedAt ?? "").localeCompare(a.p?.updatedAt ?? ""));
  // Rebuilt only when something shown changed, so that a save does not take the keyboard focus away.
  const current = state.project?.id;
  const key = JSON.stringify([current, items.map((i) => [i.id, i.bytes, i.error, i.p?.name, i.p?.updatedAt, i.p?.runs.length, i.p?.model?.label])]);
  if (key === listed) return;
  listed = key;
  const focused = document.activeElement?.closest?.("#project-list") ? document.activeElement.dataset.key : null;
  $("project-list").replaceChildren(...items.map((i) => (i.error ? brokenItem(i) : projectItem(i, i.id === current))));
  $("projects-empty").hidden = items.length > 0;
  if (focused) $("project-list").querySelector(`[data-key="${CSS.escape(focused)}"]`)?.focus();
  refreshButtons();
}

function projectItem({ id, p, bytes }, open) {
  const li = Object.assign(document.createElement("li"), { className: open ? "open" : "" });
  const title = document.createElement("p");
  title.append(Object.assign(document.createElement("strong"), { className: "project-title", textContent: p.name }));
  if (open) title.append(" (open now)");
  const facts = Object.assign(document.createElement("p"), { className: "hint" });
  facts.textContent = [p.model?.label ?? "no model", plural(p.runs.length, "run"), `changed ${when(p.updatedAt)}`, bytes !== null ? fmtBytes(bytes) : null].filter(Boolean).join(" · ");
  const row = Object.assign(document.createElement("div"), { className: "row" });
  const openB = button("Open", "open-project", () => openProject(id));
  openB.setAttribute("aria-label", `Open project ${p.name}`);
  openB.dataset.key = `open:${id}`;
  const del = button("Delete", "delete-project", () => askDelete(id, p.name, p.runs.length));
  del.setAttribute("aria-label", `Delete project ${p.name}`);
  del.dataset.key = `delete:${id}`;
  row.append(openB, del);
  li.append(title, facts, row);
  return li;
}

function brokenItem({ id, error }) {
  const li = Object.assign(document.createElement("li"), { className: "broken" });
  li.append(Object.assign(document.createElement("p"), { className: "msg", textContent: error }));
  const del = button("Delete", "delete-project", () => askDelete(id, `${DIR}/${id}`, null));
  del.setAttribute("aria-label", `Delete the unreadable project ${id}`);
  del.dataset.key = `delete:${id}`;
  li.append(del);
  return li;
}

// ---- Deleting, after a confirmation in a modal dialog (Escape or Cancel keeps the project) ----

let deleting = null;

function askDelete(id, name, runs) {
  deleting = { id, name };
  const what = runs === null ? "This unreadable project folder" : `“${name}”${runs ? ` and its ${plural(runs, "run")}, with their adapters,` : ""}`;
  setText("delete-text", `${what} will be removed from this browser. Downloaded adapters are not affected. This cannot be undone.`);
  $("delete-dialog").showModal();
  $("delete-cancel").focus();
}

async function confirmDelete() {
  const d = deleting;
  deleting = null;
  $("delete-dialog").close();
  if (!d) return;
  clearError("projects");
  try {
    const wasOpen = await deleteProject(d.id);
    setText("projects-status", `Deleted “${d.name}”.${wasOpen ? " The page still shows its work; a change after this saves it as a new project." : ""}`);
  } catch (e) {
    showError("projects", new WebPeftError("io", `“${d.name}” could not be deleted: ${explain(e)}`));
  }
  await queued(refreshList);
  showStorage();
  $("projects-title").focus();
}

// ---- The adapter earlier versions of the page kept ----------------------------------------

/** Moves the adapter an earlier version of the page kept (webpeft-kept-adapter/) into a project of its own. */
async function adoptKeptAdapter() {
  let old;
  try {
    old = await opfsDir(LEGACY);
  } catch {
    return; // nothing kept
  }
  const p = newProject();
  try {
    const meta = JSON.parse(await (await readFile(old, "meta.json")).text());
    p.name = `Kept adapter (${meta.method ?? "adapter"} on ${meta.model ?? "a model"})`;
    p.named = true;
    p.model = meta.modelKey ? { key: meta.modelKey, label: meta.model ?? meta.modelKey, backend: "auto" } : null;
    p.createdAt = p.updatedAt = meta.savedAt ?? p.createdAt;
    const dir = await projectDir(p.id, true);
    const sub = await dir.getDirectoryHandle("run-1", { create: true });
    for (const f of LEGACY_FILES) await writeFile(sub, f, await readFile(old, f));
    p.runs.push({ n: 1, at: p.updatedAt, reason: null, steps: meta.steps ?? null, loss: meta.loss ?? null, settings: { method: meta.method }, model: p.model, series: null, results: null, adapter: null, adapterDir: "run-1" });
    await writeFile(dir, "project.json", JSON.stringify(p));
    await removeOpfsDir(LEGACY);
  } catch (e) {
    // It stays where it is (and is tried again on the next visit).
    await (await projectsDir()).removeEntry(p.id, { recursive: true }).catch(() => {});
    showError("projects", new WebPeftError("io", `the adapter kept by an earlier version of this page (${LEGACY}) could not be moved into a project: ${explain(e)}`));
  }
}

export function wireProjectList() {
  $("delete-confirm").addEventListener("click", confirmDelete);
  // Cancel (or Escape) closes the dialog, and the browser puts the focus back on the Delete pressed.
  $("delete-cancel").addEventListener("click", () => $("delete-dialog").close());
  queued(async () => {
    await adoptKeptAdapter();
    await refreshList();
  });
}
