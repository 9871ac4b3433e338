// The page's shared state: the loaded model, the chosen data, the adapter on the model and the current run.

export const state = {
  tuner: null,
  /** How to load the current model again (a failed training start loses it inside the core). */
  source: null,
  modelKey: null, // "minilm" | "smollm2" | "hub:<id>" | "files:<names and sizes>"
  baseModel: undefined,
  data: null, // { name, text, check, editor: "classes" | "chat" | null (an editor's data, or a file's) }; the core's check includes its parsed classification rows, `check.examples`
  adapter: "none", // "none" | "trained" | "loaded"
  adapterRun: null, // the project's run whose adapter is on the model ("<project id>/<run n>"), or null (none, or one no project keeps)
  training: null, // the current run's Job (see job.js)
  comparing: false, // a "Compare base and adapted" under Try it is running (compare.js)
  chatting: null, // the AbortController of the chat reply being generated (chat.js)
  labels: null,
  suggestion: null, // tuner.suggestOptions for the model and data: { options, why }
  project: null, // the project the current work is saved in (projects.js), or null before there is one
};

/**
 * Says that the adapter on the model changed (trained, loaded, reset, or another model), and
 * which project's run it is (`run`, "<project id>/<run n>"; null for none or one no project
 * keeps): chat.js starts a new conversation, or goes on with one held with that run's adapter.
 */
export function adapterChanged(run = null) {
  state.adapterRun = run;
  document.dispatchEvent(new CustomEvent("webpeft:adapter-changed"));
}

/** Takes the adapter off the model, when one is on it, and says so; throws what the core throws. */
export async function takeAdapterOff() {
  if (state.adapter === "none") return;
  await state.tuner.resetAdapter();
  state.adapter = "none";
  adapterChanged();
}

/**
 * Says that the work changed (the model loaded, the data, a setting): projects.js saves the project
 * soon, or at once with `now` (a finished chat exchange: nothing more is coming to wait for, and a
 * reload right after it would otherwise lose it).
 */
export const workChanged = ({ now = false } = {}) => document.dispatchEvent(new CustomEvent("webpeft:work-changed", { detail: { now } }));
