// Section 4's training job: one run of the package, its pause/resume/stop, and its events handed to the page's ui.
import { dataFile } from "./data.js";

/**
 * One training job: one run of the package. With checkpoints on, the run
 * emits a checkpoint event (adapter, optimizer state, trainer state) every
 * `checkpointEvery` steps and the page writes it to OPFS; after a reload the
 * run continues from it with `resumeFrom`, exactly as if it had not stopped
 * (same learning-rate schedule, batches and losses).
 */
export class Job {
  constructor({ options, data, split = null, checkpointEvery, resumeFrom = null }) {
    this.options = options;
    this.data = data;
    // Classification: the page's held-out split of `data` (data.js trainingSplit): trains on
    // `split.train` with `split.eval` as the evaluation data; null: `data` and the core's evalSplit.
    this.split = split;
    this.every = checkpointEvery;
    this.resumeFrom = resumeFrom; // { step, folder, files } from OPFS, or null
    this.done = resumeFrom?.step ?? 0;
    this.total = null;
    this.run = null;
    this.paused = false;
    // True between the run's "paused" and "resumed" events: it stands between two steps.
    this.parked = false;
    this.stopped = false;
    this.abandoned = false;
    this.lastLoss = undefined;
    this.saving = Promise.resolve();
    // What of the OPFS checkpoint is this run's already (a resumed run's data and folder).
    this.savedData = !!resumeFrom;
    this.savedFolder = resumeFrom?.folder;
  }
  abandon() {
    this.abandoned = this.stopped = true;
    this.run?.cancel().catch(() => {});
  }
  async pause() {
    this.paused = true;
    await this.run?.pause();
  }
  async resume() {
    this.paused = false;
    await this.run?.resume();
  }
  async stop() {
    this.stopped = true;
    await this.run?.cancel();
  }
  async start(tuner, ui) {
    const opts = this.every > 0 ? { ...this.options, checkpointEvery: this.every } : this.options;
    const [data, evalData] = this.split ? [dataFile(this.split.train), dataFile(this.split.eval)] : [dataFile(this.data), undefined];
    const run = tuner.train(data, opts, evalData, this.resumeFrom ? { resumeFrom: this.resumeFrom.files } : {});
    this.run = run;
    if (this.paused) run.pause().catch(() => {});
    // A failed run throws its error out of this loop (the package's run.events does).
    try {
      for await (const e of run.events) {
        if (this.abandoned) break;
        this.onEvent(e, ui);
      }
      const summary = await run.done;
      await this.saving;
      return summary;
    } finally {
      this.run = null;
    }
  }
  onEvent(e, ui) {
    if (e.event === "start") {
      this.total = e.totalSteps;
      ui.start(e, this);
    } else if (e.event === "step") {
      this.done = e.step;
      this.lastLoss = e.loss;
      this.lastEpsilon = e.epsilon; // privacy spent so far (DP runs)
      ui.step(e, this);
    } else if (e.event === "eval") ui.evaluated(e);
    else if (e.event === "paused") {
      this.parked = true;
      ui.paused(true);
    } else if (e.event === "resumed") {
      this.parked = false;
      ui.paused(false);
    }
    // Saved one after the other, without holding up the events (the run goes on meanwhile).
    else if (e.event === "checkpoint") this.saving = this.saving.then(() => ui.checkpoint(this, e));
  }
}
