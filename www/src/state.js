// The page's shared state: the loaded model, the chosen data, the adapter on the model and the current run.

export const state = {
  tuner: null,
  /** How to load the current model again (a failed training start loses it inside the core). */
  source: null,
  modelKey: null, // "minilm" | "smollm2" | "hub:<id>" | "files:<names and sizes>"
  baseModel: undefined,
  data: null, // { name, text, check, editor (the examples editor's), the core check includes its parsed classification rows, `check.examples` }
  adapter: "none", // "none" | "trained" | "loaded"
  training: null, // the current run's Job (see job.js)
  labels: null,
  suggestion: null, // tuner.suggestOptions for the model and data: { options, why }
};
