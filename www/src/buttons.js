// Which of the page's buttons are enabled: they follow the state (a model loaded, a run going, an adapter on the model).
import { $ } from "./dom.js";
import { state } from "./state.js";

export function refreshButtons() {
  const t = state.training;
  const busy = !!t;
  // A chat reply in progress holds the model and its adapter: no run, load or adapter swap under it.
  const chatting = !!state.chatting;
  $("start").disabled = busy || chatting || !state.tuner;
  $("pause").disabled = !busy || t.paused;
  $("resume").disabled = !busy || !t.paused;
  $("stop").disabled = !busy;
  $("load-model").disabled = busy || chatting;
  $("compare").disabled = busy || !state.tuner || state.comparing;
  $("chat-send").disabled = busy || chatting || !state.tuner;
  $("chat-stop").disabled = !chatting;
  $("chat-new").disabled = chatting;
  $("download-adapter").disabled = busy || !state.tuner || state.adapter === "none";
  $("download-gguf").disabled = $("download-adapter").disabled;
  // A GPU job continues a run from where it stands: between steps, so while it is paused.
  $("download-gpu-job").disabled = !busy || !t.parked;
  $("adapter-files").disabled = busy || chatting || !state.tuner;
  // A project's runs and the projects list (projects.js): loading an adapter needs the model; opening loads one.
  for (const b of document.querySelectorAll(".load-run")) b.disabled = busy || chatting || !state.tuner;
  for (const b of document.querySelectorAll(".open-project")) b.disabled = busy || chatting;
  $("new-project").disabled = busy || chatting;
  $("continue-wrap").hidden = state.adapter === "none" || busy;
}
