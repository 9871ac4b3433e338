// The page's shared state: the loaded model, the chosen data, the adapter on the model and the current run.

export const state = {
  tuner: null,
  /** How to load the current model again (a failed training start loses it inside the core). */
  source: null,
  modelKey: null, // "minilm" | "smollm2" | "hub:<id>" | "files:<names and sizes>"
  baseModel: undefined,
  data: null, // { name, text, check, editor: "classes" | "chat" | null (an editor's data, or a file's) }; the core's check includes its parsed classification rows, `check.examples`
  adapter: "none", // "none" | "trained" | "loaded"
  training: null, // the current run's Job (see job.js)
  comparing: false, // a "Compare base and adapted" under Try it is running (compare.js)
  chatting: null, // the AbortController of the chat reply being generated (chat.js)
  labels: null,
  suggestion: null, // tuner.suggestOptions for the model and data: { options, why }
  project: null, // the project the current work is saved in (projects.js), or null before there is one
};

/** Says that the adapter on the model changed (trained, loaded, reset, or another model): chat.js starts a new conversation. */
export const adapterChanged = () => document.dispatchEvent(new CustomEvent("webpeft:adapter-changed"));

/** Says that the work changed (the model loaded, the data, a setting): projects.js saves the project soon. */
export const workChanged = () => document.dispatchEvent(new CustomEvent("webpeft:work-changed"));
