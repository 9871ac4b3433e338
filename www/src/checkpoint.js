// The OPFS checkpoint (section 6): a run's data, its latest checkpoint and the page's metadata, to resume after a reload.
import { showStorage } from "./keep.js";
import { writeFile, readFile, opfsDir, removeOpfsDir } from "./opfs.js";
import { $ } from "./dom.js";
import { state } from "./state.js";
import { chartUpTo } from "./chart.js";

// OPFS checkpoint: webpeft-checkpoint/{data, meta.json, step-N/{config, weights, sidecar, optimizer, state}}.
// Each checkpoint's files go into their own folder and meta.json (which names
// the folder) is written after them, so a reload in the middle of a save still
// finds the previous complete checkpoint.
const CKPT = "webpeft-checkpoint";
const CKPT_FILES = ["config", "weights", "sidecar", "optimizer", "state"];

const ckptDir = (create) => opfsDir(CKPT, create);

export async function saveCheckpoint(job, e) {
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
  await writeFile(dir, "meta.json", JSON.stringify(checkpointMeta(job, e, folder)));
  job.savedFolder = folder;
  if (old && old !== folder) await dir.removeEntry(old, { recursive: true }).catch(() => {});
  showStorage();
}

/** What the page needs besides the package's files to resume: the model to load, the data, the options. */
function checkpointMeta(job, e, folder) {
  return {
    // 3: classification holds out the page's split (data.js trainingSplit), recomputed from the data and options on resume.
    version: 3,
    savedAt: new Date().toISOString(),
    model: { key: state.modelKey, label: state.source?.label, backend: $("backend").value },
    // The project the run belongs to (projects.js): a resumed run's record goes there.
    project: state.project?.id ?? null,
    dataName: job.data.name,
    options: job.options,
    checkpointEvery: job.every,
    step: e.step,
    total: job.total,
    folder,
    // The chart up to the checkpoint, to draw again on resume.
    series: chartUpTo(e.step),
  };
}

/** The saved checkpoint as { dir, meta }, or null when there is none this page can resume. */
export async function readCheckpoint() {
  try {
    const dir = await ckptDir(false);
    const meta = JSON.parse(await (await readFile(dir, "meta.json")).text());
    if (meta.version !== 3) return null; // an older page's checkpoint (another split) cannot resume exactly
    return { dir, meta };
  } catch {
    return null;
  }
}

/** The package's files of the checkpoint `ck` (its `resumeFrom`). */
export async function readCheckpointFiles(ck) {
  const sub = await ck.dir.getDirectoryHandle(ck.meta.folder);
  const files = {};
  for (const k of CKPT_FILES) files[k] = new Uint8Array(await (await readFile(sub, k)).arrayBuffer());
  return files;
}

export async function readCheckpointData(ck) {
  return (await readFile(ck.dir, "data")).text();
}

export async function clearCheckpoint() {
  await removeOpfsDir(CKPT).catch(() => {});
  showStorage();
}
