// Section 5, Try it: the base and the adapted model side by side (classification, or one prompt for a model without a chat template), and the try-it text.
import { WebPeftError } from "/web/dist/index.js";
import { $, setText } from "./dom.js";
import { explain, showError, clearError } from "./errors.js";
import { state } from "./state.js";
import { SAMPLES } from "./presets.js";
import { refreshButtons } from "./buttons.js";
import { chatFits } from "./chat.js";
import { debounced, oneAtATime } from "./debounce.js";

// The base model's output first, then the adapted one's.
const PANES = [[false, "base-out"], [true, "adapted-out"]];
const NO_ADAPTER = "(no adapter yet: train or load one)";

/** Puts a sample's text in the box; marked, so that a task change may replace it (not what the user typed). */
export function setSampleTry(sample) {
  $("try-input").value = sample.tryText;
  $("try-input").dataset.sample = "1";
}

/**
 * Fits the section to the task: a chat model on a causal-lm task gets the multi-turn chat
 * (chat.js); otherwise the box (its label, and a sample text when it is empty or still a
 * sample) and the two panes.
 */
export function fitTryToTask(causal) {
  const chat = chatFits(causal);
  $("chat").hidden = !chat;
  $("try-single").hidden = chat;
  $("try-panes").hidden = chat;
  setText("try-label", causal ? "Prompt" : "Texts to classify (one per line)");
  // Why the base model's labels look random: its classifier head is new and untrained.
  $("base-note").hidden = causal;
  if (!$("try-input").value || $("try-input").dataset.sample) setSampleTry(causal ? SAMPLES.chat : SAMPLES.tickets);
}

async function compare() {
  clearError("try");
  const t = state.tuner;
  if (!t) return;
  const input = $("try-input").value.trim();
  if (!input) return showError("try", new WebPeftError("input", "type a prompt or some texts first"));
  // The button's comparison replaces a live one still waiting for the typing to pause, and comes
  // after one already running (their tables would otherwise interleave).
  live.cancel();
  state.comparing = true;
  refreshButtons();
  try {
    if ($("task").value === "causal-lm") await compareGenerate(t, input);
    else await inTurn(() => compareClassify(t, input.split("\n").map((s) => s.trim()).filter(Boolean)));
  } catch (e) {
    showError("try", e);
  } finally {
    state.comparing = false;
    refreshButtons();
  }
}

// Classifying comparisons (the button's and the live ones) run one after the other.
const inTurn = oneAtATime();

async function compareGenerate(t, prompt) {
  const opts = { chat: t.info.hasChatTemplate, maxNewTokens: 48 };
  for (const [adapter, id] of PANES) {
    const out = $(id);
    out.replaceChildren();
    const p = document.createElement("p");
    out.appendChild(p);
    // One worker runs one thing at a time: the base answer first, then the adapted one.
    if (adapter && state.adapter === "none") {
      p.textContent = NO_ADAPTER;
      continue;
    }
    await t.generate(prompt, { ...opts, adapter, onToken: (s) => (p.textContent += s) });
  }
}

async function compareClassify(t, texts) {
  for (const [adapter, id] of PANES) {
    const out = $(id);
    out.replaceChildren();
    if (adapter && state.adapter === "none") {
      out.textContent = NO_ADAPTER;
      continue;
    }
    let results;
    try {
      results = await t.classify(texts, { adapter });
    } catch (e) {
      out.textContent = explain(e);
      continue;
    }
    out.appendChild(predictionsTable(texts, results, adapter));
  }
}

function predictionsTable(texts, results, adapter) {
  const table = document.createElement("table");
  table.setAttribute("aria-label", adapter ? "Adapted predictions" : "Base predictions");
  const head = table.insertRow();
  for (const h of ["text", "label", "probabilities"]) head.appendChild(Object.assign(document.createElement("th"), { textContent: h }));
  results.forEach((r, i) => {
    const tr = table.insertRow();
    // The exact probabilities: the cell shows whole percentages, its hover text six decimals.
    tr.dataset.probs = JSON.stringify(r.probs);
    tr.insertCell().textContent = texts[i];
    tr.insertCell().textContent = r.label;
    tr.insertCell().textContent = Object.entries(r.probs)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${(v * 100).toFixed(0)}%`)
      .join(", ");
    tr.cells[2].title = Object.entries(r.probs).map(([k, v]) => `${k} ${v.toFixed(6)}`).join(", ");
  });
  return table;
}

// Classification with an adapter: the predictions follow the text as it is typed, after a
// pause. One classify at a time: text typed during one is classified when it ends.
let classifying = false;
let again = false;
const live = debounced(async () => {
  if (classifying) {
    again = true;
    return;
  }
  const t = state.tuner;
  const texts = $("try-input").value.split("\n").map((s) => s.trim()).filter(Boolean);
  if (!t || state.training || state.adapter === "none" || $("task").value !== "seq-cls" || !texts.length) return;
  classifying = true;
  clearError("try");
  try {
    await inTurn(() => compareClassify(t, texts));
  } catch (e) {
    showError("try", e);
  } finally {
    classifying = false;
  }
  if (again) {
    again = false;
    live.soon(0);
  }
});

/** Empties both panes (a new project: their outputs were the work before's). */
export function clearPanes() {
  live.cancel();
  for (const [, id] of PANES) $(id).replaceChildren();
}

export function wireCompare() {
  $("try-input").addEventListener("input", () => {
    delete $("try-input").dataset.sample;
    live.soon(500);
  });
  $("compare").addEventListener("click", compare);
}
