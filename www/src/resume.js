// The resume offer after a reload: what run a checkpoint holds, and resuming it exactly or discarding it.
import { WebPeftError } from "/web/dist/index.js";
import { $, setText } from "./dom.js";
import { showError, clearError } from "./errors.js";
import { state } from "./state.js";
import { selectModel, loadModel } from "./model.js";
import { useData } from "./data.js";
import { writeOptions } from "./method.js";
import { startTraining } from "./train.js";
import { readCheckpoint, readCheckpointFiles, readCheckpointData, clearCheckpoint } from "./checkpoint.js";
import { adoptProject } from "./projects.js";

export async function offerResume() {
  const ck = await readCheckpoint();
  if (!ck) return;
  const m = ck.meta;
  $("resume-offer").hidden = false;
  // Local files cannot be picked for the user: they load them, then resume.
  const local = m.model.key.startsWith("files");
  setText(
    "resume-text",
    `A run on ${m.model.label} with ${m.dataName} stopped at step ${m.step} of ${m.total} (saved ${new Date(m.savedAt).toLocaleString()}). ` +
      (local ? "Load the same model files in section 1 first, then resume. " : "") +
      "Resuming continues exactly where it stopped: the adapter, the optimizer state, the learning-rate schedule and the data order are all restored.",
  );
  $("resume-run").onclick = () => resumeRun(ck, local);
  $("discard-run").onclick = async () => {
    await clearCheckpoint();
    $("resume-offer").hidden = true;
  };
}

async function resumeRun(ck, local) {
  const m = ck.meta;
  clearError("model");
  try {
    // The resumed run belongs to the project it started in: its record goes there when it ends.
    await adoptProject(m.project);
    if (!local) {
      selectModel(m.model.key, m.model.backend);
      await loadModel();
    } else if (!state.tuner) {
      throw new WebPeftError("input", "load the model files first (section 1), then press Resume run");
    }
    const files = await readCheckpointFiles(ck);
    await useData(m.dataName, await readCheckpointData(ck));
    writeOptions(m.options);
    $("checkpoint-every").value = m.checkpointEvery;
    $("resume-offer").hidden = true;
    startTraining({ resumeFrom: { meta: m, files } });
  } catch (e) {
    showError("model", e);
  }
}
