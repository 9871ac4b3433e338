// Section 4, Training: starting, pausing, resuming and stopping a run, and showing its progress as it goes.
import { WebPeftError } from "/web/dist/index.js";
import { $, setText } from "./dom.js";
import { fmtInt, fmtTime } from "./format.js";
import { explain, showError, clearError } from "./errors.js";
import { state, adapterChanged, takeAdapterOff } from "./state.js";
import { refreshButtons } from "./buttons.js";
import { Job } from "./job.js";
import { resetChart, restoreChart, plotStep, plotEval } from "./chart.js";
import { readOptions } from "./method.js";
import { saveCheckpoint, clearCheckpoint } from "./checkpoint.js";
import { loadModel } from "./model.js";
import { trainingSplit } from "./data.js";
import { flushExamples } from "./examples.js";
import { flushConversations } from "./conversations.js";
import { resetResults, showResults, showSavedResults } from "./results.js";
import { flushProject, saveRun, saveRunResults, runKey } from "./projects.js";

/** An evaluation's metrics as the Eval line shows them. */
const evalText = (m) => `loss ${m.loss.toFixed(4)}${m.accuracy !== undefined ? ` · accuracy ${(m.accuracy * 100).toFixed(0)}%` : ""}${m.perplexity !== undefined ? ` · perplexity ${m.perplexity.toFixed(1)}` : ""}`;

/** How a run ended, in the status line's words. */
const endText = (reason) => (reason === "completed" ? "Finished" : reason === "cancelled" ? "Stopped" : reason ? `Ended (${reason})` : "Ended");

/** Privacy spent as the line shows it: ε of the budget, and δ. */
const epsilonText = (eps, dp) => (eps !== undefined && eps !== null && dp ? `ε = ${eps.toFixed(2)} of ${dp.targetEpsilon} (δ = ${dp.delta})` : "not private");

/** The status line of an ended run: "Finished: 6 steps in 12 s, last loss 0.9876." */
const endLine = (reason, steps, seconds, loss) =>
  `${endText(reason)}: ${steps ?? "?"} steps${Number.isFinite(seconds) ? ` in ${fmtTime(seconds)}` : ""}${loss !== undefined && loss !== null ? `, last loss ${loss.toFixed(4)}` : ""}.`;

/** What the page shows of a run's events (the Job calls these). */
const ui = {
  start(e, job) {
    $("train-progress").max = job.total;
    if (e.trainableParameters) {
      setText("est-params", `${fmtInt(e.trainableParameters)} (exact)`);
      setText("est-share", `${((100 * e.trainableParameters) / e.totalParameters).toFixed(3)}% of ${fmtInt(e.totalParameters)}`);
    }
    if (e.warnings?.length) setText("train-msg", `Warnings: ${e.warnings.join("; ")}`);
  },
  step(e, job) {
    plotStep(e);
    $("train-progress").max = job.total;
    $("train-progress").value = e.step;
    const epochs = job.options.steps ? "" : ` · epoch ${((e.step / job.total) * job.options.epochs).toFixed(1)} of ${job.options.epochs}`;
    setText("train-status", `Step ${e.step} / ${job.total}${epochs} · ETA ${fmtTime(e.etaS)}`);
    setText("stat-loss", e.loss.toFixed(4));
    setText("stat-tps", fmtInt(e.tokensPerS));
    setText("stat-epsilon", epsilonText(e.epsilon, job.options.dp));
  },
  evaluated(e) {
    plotEval(e);
    setText("stat-eval", evalText(e.metrics));
  },
  paused(p) {
    if (p) setText("train-status", `Paused at step ${$("train-progress").value} / ${$("train-progress").max}.`);
    refreshButtons();
  },
  async checkpoint(job, e) {
    if (job.abandoned) return;
    try {
      await saveCheckpoint(job, e);
      setText("keep-status", `Checkpoint saved at step ${e.step} of ${job.total}.`);
    } catch (err) {
      setText("keep-status", `Checkpoint not saved: ${explain(err)}`);
    }
  },
};

/** Starts a run; `resumeFrom` ({ meta, files } from OPFS) continues a checkpointed one. */
export async function startTraining({ resumeFrom } = {}) {
  clearError("train");
  // What was just typed in an editor is the data this run trains on.
  if (!resumeFrom) {
    await flushExamples();
    await flushConversations();
  }
  if (refuseStart(resumeFrom)) return;
  // The project holds the data and settings this run starts with (its checkpoint names it).
  if (!resumeFrom) await flushProject();
  clearError("data");
  resetResults();
  const job = await newJob(resumeFrom);
  state.training = job;
  await prepareChart(job, resumeFrom);
  setText("train-status", resumeFrom ? `Resuming at step ${job.done}…` : "Starting…");
  setText("stat-epsilon", "–");
  refreshButtons();
  const t0 = performance.now();
  let summary = null;
  try {
    summary = await job.start(state.tuner, ui);
    if (job.abandoned) return;
    await finished(job, summary, t0);
  } catch (e) {
    summary = null;
    if (job.abandoned) return;
    await failed(job, e);
  } finally {
    if (state.training === job) state.training = null;
    refreshButtons();
  }
  // A classification run (finished or stopped) is then judged on the rows it held out, and its
  // record in the project keeps what that showed.
  if (summary && job.split) {
    const results = await showResults(job.split, summary);
    if (results && job.record) await saveRunResults(job.record, results);
  }
}

const fixLine = (line) => `Training did not start: fix line ${line} of ${state.data.name} (see Data).`;

/** Says why a run cannot start, if it cannot (no model, no data, data with problems): true then. */
function refuseStart(resumeFrom) {
  if (!state.tuner) {
    showError("train", new WebPeftError("input", "load a model first (section 1)"));
    return true;
  }
  if (!state.data) {
    showError("train", new WebPeftError("input", "choose training data first (section 2)"));
    return true;
  }
  // Data the check found problems in is not sent: the first one says what to fix (the
  // problems stay listed under Data).
  const problem = state.data.check?.problems[0];
  if (resumeFrom || !problem) return false;
  setText("train-msg", problem.line !== null ? fixLine(problem.line) : `Training did not start: ${state.data.name} has a problem (see Data).`);
  return true;
}

async function newJob(resumeFrom) {
  // A finished run leaves its adapter on the model: the checkbox says whether
  // this run continues it or trains a new one (the package's `adapter` option;
  // a failed start keeps the current adapter). A resumed run brings its own
  // adapter, so the current one is dropped first.
  if (resumeFrom) await takeAdapterOff();
  const meta = resumeFrom?.meta;
  const options = meta?.options ?? readOptions();
  if (!resumeFrom && state.adapter !== "none") options.adapter = $("continue-adapter").checked ? "continue" : "new";
  return new Job({
    options,
    data: state.data,
    // Recomputed from the same data and options on resume, so the run holds out the same rows.
    split: trainingSplit(state.data, options),
    checkpointEvery: meta?.checkpointEvery ?? Number($("checkpoint-every").value),
    resumeFrom: resumeFrom ? { step: meta.step, folder: meta.folder, files: resumeFrom.files } : null,
  });
}

async function prepareChart(job, resumeFrom) {
  // The chart so far comes back with the checkpoint.
  if (resumeFrom) return restoreChart(resumeFrom.meta.series);
  resetChart();
  // A new run replaces an earlier run's checkpoint.
  if (job.every > 0) {
    await clearCheckpoint();
    $("resume-offer").hidden = true;
  }
}

async function finished(job, summary, t0) {
  state.adapter = "trained";
  const seconds = (performance.now() - t0) / 1000;
  // The checkpoint is for runs cut short by a reload; a run that ended on purpose needs none.
  // It is cleared before the status says the run ended, so that "Finished"/"Stopped" and
  // an enabled Start appear together (the caller re-enables the buttons right after).
  if (job.every > 0) await clearCheckpoint();
  // The run, its chart and metrics and its adapter go into the project (Keep the work), so a
  // reload or a later visit can show it and put the adapter back without a download.
  job.record = await saveRun(job, summary, seconds);
  // Saved with its adapter, the run names the adapter on the model (a chat held with it goes on when it is loaded again).
  adapterChanged(job.record.adapter ? runKey(state.project, job.record) : null);
  setText("train-status", endLine(summary.reason, summary.steps, seconds, summary.loss));
  $("train-progress").value = summary.steps;
}

/** Shows a saved run (`projects.js`'s record) here: its end, its last numbers, its chart and its held-out results; null: no run yet. */
export function showRun(run, projectName) {
  resetResults();
  if (!run) {
    resetChart();
    $("train-progress").value = 0;
    setText("train-status", "Not started.");
    for (const id of ["stat-loss", "stat-eval", "stat-epsilon"]) setText(id, "–");
    return;
  }
  restoreChart(run.series);
  $("train-progress").max = run.total ?? run.steps;
  $("train-progress").value = run.steps;
  setText("train-status", `Run ${run.n} of “${projectName}”, ${new Date(run.at).toLocaleString()}: ${endLine(run.reason, run.steps, run.seconds, run.loss)}`);
  setText("stat-loss", run.loss !== undefined && run.loss !== null ? run.loss.toFixed(4) : "–");
  setText("stat-eval", run.eval ? evalText(run.eval) : "–");
  setText("stat-epsilon", epsilonText(run.epsilon, run.settings?.dp));
  if (run.results) showSavedResults(run.results);
}

async function failed(job, e) {
  showError(e.line || e.source?.match?.(/\.(jsonl|csv|txt)$/) ? "data" : "train", e);
  // A failed start leaves the model and its adapter as they were; a run that
  // started and then failed keeps the adapter of its last good step.
  const started = job.total !== null;
  if (started) {
    state.adapter = "trained";
    adapterChanged();
  }
  setText("train-status", started ? `Stopped by an error at step ${job.done}; the adapter keeps its last good values.` : "Not started.");
  if (state.data && e.line) setText("train-msg", fixLine(e.line));
  // Only a crash of the engine loses the model: load it again so the page keeps working.
  if (e.kind === "crash") {
    setText("model-status", "Reloading the model after the error…");
    await loadModel(state.source).catch(() => {});
  }
}

export function wireTraining() {
  $("start").addEventListener("click", () => startTraining());
  $("pause").addEventListener("click", async () => {
    await state.training?.pause();
    ui.paused(true);
  });
  $("resume").addEventListener("click", async () => {
    await state.training?.resume();
    setText("train-status", "Resumed…");
    refreshButtons();
  });
  $("stop").addEventListener("click", async () => {
    setText("train-status", "Stopping after this step…");
    await state.training?.stop();
  });
}
