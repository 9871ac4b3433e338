// Section 2, Data: choosing the file (picker, drop, a sample or one of the two editors), its first lines, the core's check, and the held-out split.
import { Tuner } from "/web/dist/index.js";
import { $, setText, dropZone } from "./dom.js";
import { fmtInt } from "./format.js";
import { showError, clearError } from "./errors.js";
import { state, workChanged } from "./state.js";
import { SAMPLES } from "./presets.js";
import { refreshButtons } from "./buttons.js";
import { updateEstimate } from "./estimate.js";
import { setSampleTry } from "./compare.js";
import { showExamplesStatus, cancelExamplesSync } from "./examples.js";
import { showConversationsStatus, cancelConversationsSync, importConversations } from "./conversations.js";
import { LABELLED_FORMATS, holdOut, toJsonl } from "./labelled.js";

// The data is checked by the core's own parser (Tuner.validateData): the format, rows,
// labels and every problem with its line, as training would report them. With a model
// loaded it is also tokenised (token counts, truncation at the sequence length).

const FORMATS = {
  "csv-text-label": "CSV",
  "jsonl-text-label": "JSON lines (text + label)",
  "jsonl-prompt-completion": "JSON lines (prompt / completion)",
  "jsonl-messages": "JSON lines (chat messages)",
  "jsonl-text": "JSON lines (plain text)",
  txt: "plain text",
};

/** The chosen data as the File the package reads. */
export const dataFile = (d) => new File([d.text], d.name);

/** The first lines of the file as they are (the check says what they mean). */
function showFirstLines(text) {
  const table = $("data-preview");
  table.replaceChildren();
  addPreviewRow(table, ["line", "content"], true);
  const lines = text.split("\n");
  let shown = 0;
  for (let i = 0; i < lines.length && shown < 6; i++) {
    const l = lines[i].replace(/\r$/, "");
    if (!l.trim()) continue;
    addPreviewRow(table, [String(i + 1), l]);
    shown++;
  }
  $("data-preview-wrap").hidden = false;
}

function addPreviewRow(table, cells, header = false) {
  const tr = table.insertRow();
  for (const c of cells) {
    const cell = document.createElement(header ? "th" : "td");
    cell.textContent = c.length > 160 ? c.slice(0, 160) + "…" : c;
    tr.appendChild(cell);
  }
}

/** What the check found, in the status line and (problems) the data message. */
function showCheck(name, v) {
  const what = v.format ? FORMATS[v.format] ?? v.format : "unreadable";
  const rows = `${fmtInt(v.rows)} row${v.rows === 1 ? "" : "s"}`;
  const labels = v.labels ? `; labels ${v.labels.map((l) => l.label).join(", ")} (${v.labels.map((l) => l.count).join(" / ")} rows)` : "";
  const tokens = v.tokens ? `; ${fmtInt(v.tokens.total)} tokens, longest row ${fmtInt(v.tokens.longest)}` : "";
  const warn = v.warnings.length ? ` ${v.warnings.join("; ")}.` : "";
  setText("data-status", `${name}: ${what}, ${rows}${labels}${tokens}.${warn}`);
  if (v.ok) return clearError("data");
  setText("data-msg", problemsLine(name, v.problems));
}

/** A problem's own words: the core's message without the source and line it starts with. */
export function problemText(p) {
  const msg = p.message.startsWith(`${p.source}: `) ? p.message.slice(p.source.length + 2) : p.message;
  return p.line !== null ? msg.replace(new RegExp(`^line ${p.line}: `), "") : msg;
}

/** The first five problems, each said once with its line (the core's messages repeat the source and line). */
export function problemsLine(name, problems) {
  const shown = problems.slice(0, 5).map((p) => (p.line !== null ? `line ${p.line}: ${problemText(p)}` : problemText(p)));
  const more = problems.length > shown.length ? ` (and ${problems.length - shown.length} more)` : "";
  const n = problems.length;
  return `${n} problem${n === 1 ? "" : "s"} in ${name}${more}: ${shown.join("; ")}`;
}

/**
 * The core's check of `text` as a file called `name`: with the model's tokenizer
 * and the chosen task once a model is loaded (not while it trains:
 * tuner.validateData is refused then), else with Tuner.validateData, which needs
 * no model (no token counts).
 */
export function validate(name, text) {
  const t = state.training ? null : state.tuner;
  const file = dataFile({ name, text });
  // `examples`: classification rows as the core parsed them (the page splits and shows them; it parses nothing itself).
  return t ? t.validateData(file, { task: $("task").value, seqLen: Number($("seq-len").value) || undefined, examples: true }) : Tuner.validateData(file, { examples: true });
}

/** Checks the chosen data (again: after a model is loaded, with its tokenizer and task). */
export async function checkData() {
  const d = state.data;
  if (!d) return;
  let v;
  try {
    v = await validate(d.name, d.text);
  } catch (e) {
    if (state.data === d) showError("data", e);
    return;
  }
  if (state.data !== d) return; // another file was chosen meanwhile
  d.check = v;
  state.labels = v.labels?.map((l) => l.label) ?? null;
  showCheck(d.name, v);
  showHoldOut();
  updateEstimate();
  // The method section suggests settings for this data (method.js).
  document.dispatchEvent(new CustomEvent("webpeft:data-checked"));
}

/** The editors' status lines, and which editor shows: the task's (conversations for causal-lm), and the one holding the data. */
export function showEditors() {
  const causal = $("task").value === "causal-lm";
  const editor = state.data?.editor;
  $("examples").hidden = causal && editor !== "classes";
  $("conversations").hidden = !causal && editor !== "chat";
  showExamplesStatus();
  showConversationsStatus();
}

/** `opts.editor`: the data is an editor's, not a file: "classes" (examples.js) or "chat" (conversations.js). */
export async function useData(name, text, opts = {}) {
  // Data chosen now wins over another editor's edit still waiting to be applied.
  if (opts.editor !== "classes") cancelExamplesSync();
  if (opts.editor !== "chat") cancelConversationsSync();
  clearError("data");
  state.data = { name, text, check: null, editor: opts.editor ?? null };
  state.labels = null;
  setText("data-status", `${name}: checking…`);
  showFirstLines(text);
  showHoldOut();
  showEditors();
  refreshButtons();
  workChanged();
  await checkData();
}

/** No data (an editor emptied). */
export function clearData() {
  clearError("data");
  state.data = null;
  state.labels = null;
  setText("data-status", "No data chosen.");
  $("data-preview-wrap").hidden = true;
  showHoldOut();
  showEditors();
  refreshButtons();
  workChanged();
}

/** The classification rows of the chosen data as the core's check parsed them; null for other data or data with problems. */
export function labelledRows(d) {
  if (!d?.check?.ok || !LABELLED_FORMATS.has(d.check.format)) return null;
  return d.check.examples ?? null;
}

/**
 * What a classification run trains and evaluates on: the page holds out the
 * "Held out for evaluation" share of each class (labelled.js's holdOut, fixed by
 * the seed) and passes it to `train` as the evaluation data, so that after the
 * run it can classify exactly those rows (per-class accuracy, confusion matrix).
 * Null (the core's own `evalSplit`) for other tasks and data, or nothing held out.
 */
export function trainingSplit(d, options) {
  if (options.task !== "seq-cls" || !(options.evalSplit > 0)) return null;
  const rows = labelledRows(d);
  if (!rows) return null;
  const { train, held } = holdOut(rows, options.evalSplit, options.seed ?? 0);
  if (!held.length) return null;
  const stem = d.name.replace(/\.[^.]*$/, "");
  return { train: { name: `${stem}.train.jsonl`, text: toJsonl(train) }, eval: { name: `${stem}.held-out.jsonl`, text: toJsonl(held) }, held };
}

/** The one line under the slider: what a classification run holds out (or that the core picks the rows). */
function showHoldOut() {
  const d = state.data;
  const f = Number($("eval-split").value);
  const rows = $("task").value === "seq-cls" ? labelledRows(d) : null;
  if (!rows) {
    setText("eval-split-note", d?.check?.ok ? (f > 0 ? "The core holds out this share of the rows, picked at random with the seed." : "Nothing held out: no evaluation.") : "");
    return;
  }
  const { held } = holdOut(rows, f, Number($("seed").value) || 0);
  setText(
    "eval-split-note",
    held.length
      ? `Held out for evaluation: ${fmtInt(held.length)} of ${fmtInt(rows.length)} examples, the same share of each class (at least one of each class with two or more), picked with the seed; after training the page shows per-class accuracy and a confusion matrix on them.`
      : "Nothing held out: no per-class accuracy after training (each class needs two or more examples, and a share above 0%).",
  );
}

/**
 * How many rows a run of the checked data will hold out: the page's per-class split for
 * classification, else the core's (`round(share x rows)`, at least one and never all).
 */
export function heldOutCount() {
  const d = state.data;
  const f = Number($("eval-split").value);
  const rows = $("task").value === "seq-cls" ? labelledRows(d) : null;
  if (rows) return holdOut(rows, f, Number($("seed").value) || 0).held.length;
  const n = d?.check?.rows ?? 0;
  return f > 0 && n >= 2 ? Math.min(Math.max(Math.round(f * n), 1), n - 1) : 0;
}

export const showEvalSplit = () => setText("eval-split-value", `${Math.round($("eval-split").value * 100)}%`);

export function wireData() {
  $("data-file").addEventListener("change", async () => {
    const f = $("data-file").files[0];
    if (f) await useData(f.name, await f.text());
  });
  dropZone($("data-drop"), async (files) => {
    if (files[0]) await useData(files[0].name, await files[0].text());
  });
  for (const [id, key] of [["sample-tickets", "tickets"], ["sample-chat", "chat"]]) {
    $(id).addEventListener("click", async () => {
      const s = SAMPLES[key];
      const text = await (await fetch(s.url)).text();
      // The chat sample goes into the conversations editor, to read and edit there.
      if (key === "chat") await importConversations(s.name, text);
      else await useData(s.name, text);
      setSampleTry(s);
    });
  }
  $("eval-split").addEventListener("input", () => {
    showEvalSplit();
    showHoldOut();
  });
  $("seed").addEventListener("input", showHoldOut);
}
