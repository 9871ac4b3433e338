// Section 2, Data: choosing the file (picker, drop or a sample), its first lines, and the core's check of it.
import { Tuner } from "/web/dist/index.js";
import { $, setText, dropZone } from "./dom.js";
import { fmtInt } from "./format.js";
import { showError, clearError } from "./errors.js";
import { state } from "./state.js";
import { SAMPLES } from "./presets.js";
import { refreshButtons } from "./buttons.js";
import { updateEstimate } from "./estimate.js";
import { setSampleTry } from "./compare.js";

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

/** The first five problems, each said once with its line (the core's messages repeat the source and line). */
function problemsLine(name, problems) {
  const shown = problems.slice(0, 5).map((p) => {
    let msg = p.message.startsWith(`${p.source}: `) ? p.message.slice(p.source.length + 2) : p.message;
    if (p.line !== null) msg = msg.replace(new RegExp(`^line ${p.line}: `), "");
    return p.line !== null ? `line ${p.line}: ${msg}` : msg;
  });
  const more = problems.length > shown.length ? ` (and ${problems.length - shown.length} more)` : "";
  const n = problems.length;
  return `${n} problem${n === 1 ? "" : "s"} in ${name}${more}: ${shown.join("; ")}`;
}

/** Checks the chosen data (again: after a model is loaded, with its tokenizer and task). */
export async function checkData() {
  const d = state.data;
  if (!d) return;
  // tuner.validateData is refused while training; Tuner.validateData needs no model (no token counts).
  const t = state.training ? null : state.tuner;
  const opts = t ? { task: $("task").value, seqLen: Number($("seq-len").value) || undefined } : {};
  let v;
  try {
    v = t ? await t.validateData(dataFile(d), opts) : await Tuner.validateData(dataFile(d), opts);
  } catch (e) {
    if (state.data === d) showError("data", e);
    return;
  }
  if (state.data !== d) return; // another file was chosen meanwhile
  d.check = v;
  state.labels = v.labels?.map((l) => l.label) ?? null;
  showCheck(d.name, v);
  updateEstimate();
}

export async function useData(name, text) {
  clearError("data");
  state.data = { name, text, check: null };
  state.labels = null;
  setText("data-status", `${name}: checking…`);
  showFirstLines(text);
  refreshButtons();
  await checkData();
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
      const r = await fetch(s.url);
      await useData(s.name, await r.text());
      setSampleTry(s);
    });
  }
  $("eval-split").addEventListener("input", showEvalSplit);
}
