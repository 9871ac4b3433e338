// Which of the page's buttons are enabled: they follow the state (a model loaded, a run going, an adapter on the model).
import { $ } from "./dom.js";
import { state } from "./state.js";

export function refreshButtons() {
  const t = state.training;
  const busy = !!t;
  $("start").disabled = busy || !state.tuner;
  $("pause").disabled = !busy || t.paused;
  $("resume").disabled = !busy || !t.paused;
  $("stop").disabled = !busy;
  $("load-model").disabled = busy;
  $("compare").disabled = busy || !state.tuner;
  $("download-adapter").disabled = busy || !state.tuner || state.adapter === "none";
  $("download-gguf").disabled = $("download-adapter").disabled;
  $("adapter-files").disabled = busy || !state.tuner;
  $("continue-wrap").hidden = state.adapter === "none" || busy;
}
