// Section 2, Data: the examples editor: classes with their typed examples, CSV/JSONL import and export, used as the training data.
import { debounced } from "./debounce.js";
import { $, setText, saveAs } from "./dom.js";
import { fmtInt } from "./format.js";
import { showError, clearError } from "./errors.js";
import { state } from "./state.js";
import { useData, clearData, validate, problemsLine } from "./data.js";
import { LABELLED_FORMATS, byLabel, toCsv, toJsonl } from "./labelled.js";

// The editor's examples become the data exactly as a file with the same
// content would: a CSV (text,label) called examples.csv, checked by the core
// (useData → Tuner.validateData) and trained from as it is. Editing any class
// makes the editor the data again (a file chosen later replaces it).
export const EXAMPLES_NAME = "examples.csv";
let nextKey = 1;

/** The classes as typed: [{ name, examples }] (blank lines dropped, each line trimmed). */
function readClasses() {
  return [...$("classes").querySelectorAll(".class-block")].map((b) => ({
    name: b.querySelector("input").value.trim(),
    examples: b.querySelector("textarea").value.split("\n").map((s) => s.trim()).filter(Boolean),
  }));
}

/** The rows the editor makes, class by class ({ text, label }). */
export function editorRows() {
  return readClasses().flatMap((c) => c.examples.map((text) => ({ text, label: c.name })));
}

/** Adds a class block (name, examples, remove button); returns it. */
function addClass(name = "", examples = []) {
  const key = nextKey++;
  const block = document.createElement("fieldset");
  block.className = "class-block";
  const legend = document.createElement("legend");
  const nameLabel = Object.assign(document.createElement("label"), { htmlFor: `class-name-${key}` });
  const nameInput = Object.assign(document.createElement("input"), { id: `class-name-${key}`, type: "text", autocomplete: "off", spellcheck: false, value: name, placeholder: "e.g. billing" });
  const exLabel = Object.assign(document.createElement("label"), { htmlFor: `class-examples-${key}` });
  const exInput = Object.assign(document.createElement("textarea"), { id: `class-examples-${key}`, rows: 4, value: examples.join("\n") });
  exInput.placeholder = "One example per line";
  const remove = Object.assign(document.createElement("button"), { type: "button", className: "secondary remove-class", textContent: "Remove class" });
  remove.addEventListener("click", () => removeClass(block));
  nameInput.addEventListener("input", () => labelBlocks());
  block.append(legend, nameLabel, nameInput, exLabel, exInput, remove);
  $("classes").appendChild(block);
  labelBlocks();
  return block;
}

/** Numbers the blocks and names their controls ("Class 2 name", "Remove class 2 (bug)"): renumbered after a removal. */
function labelBlocks() {
  [...$("classes").querySelectorAll(".class-block")].forEach((b, i) => {
    const n = i + 1;
    const name = b.querySelector("input").value.trim();
    b.querySelector("legend").textContent = `Class ${n}${name ? `: ${name}` : ""}`;
    const [nameLabel, exLabel] = b.querySelectorAll("label");
    nameLabel.textContent = `Class ${n} name`;
    exLabel.textContent = `Class ${n} examples (one per line)`;
    b.querySelector(".remove-class").setAttribute("aria-label", `Remove class ${n}${name ? ` (${name})` : ""}`);
  });
}

function removeClass(block) {
  const blocks = [...$("classes").querySelectorAll(".class-block")];
  const i = blocks.indexOf(block);
  block.remove();
  labelBlocks();
  // Focus stays in the editor: on the class that took its place, else the previous one, else "Add class".
  const rest = [...$("classes").querySelectorAll(".class-block")];
  (rest[i] ?? rest[i - 1])?.querySelector("input").focus() ?? $("add-class").focus();
  syncSoon(0);
}

/** What is wrong with the classes as typed (one sentence), or "". */
function classProblems(classes) {
  const unnamed = classes.map((c, i) => (c.examples.length && !c.name ? i + 1 : 0)).filter(Boolean);
  if (unnamed.length) return `Class ${unnamed.join(", ")} ${unnamed.length > 1 ? "have" : "has"} examples but no name: name ${unnamed.length > 1 ? "them" : "it"} (training refuses examples without a label).`;
  const seen = new Set();
  for (const c of classes) {
    if (c.name && seen.has(c.name)) return `Two classes are named "${c.name}": their examples train as one class.`;
    seen.add(c.name);
  }
  return "";
}

// The editor becomes the data after a pause in typing (`syncing.soon(ms)`, at once with 0).
const syncing = debounced(() => sync());
const syncSoon = (ms) => syncing.soon(ms);

/** Drops a pending edit's sync (a file was chosen meanwhile; editing again makes the editor the data). */
export const cancelExamplesSync = () => syncing.cancel();

/** Applies a pending edit now (Start calls this, so the run trains on what is typed). */
export const flushExamples = () => syncing.flush();

async function sync() {
  const classes = readClasses();
  setText("examples-msg", classProblems(classes));
  const rows = editorRows();
  if (!rows.length) {
    if (state.data?.editor === "classes") clearData();
    else showExamplesStatus();
    return;
  }
  const csv = toCsv(rows);
  if (state.data?.editor === "classes" && state.data.text === csv) return showExamplesStatus();
  await useData(EXAMPLES_NAME, csv, { editor: "classes" });
}

/** The editor's status line: how many examples, and whether training uses them or a file. */
export function showExamplesStatus() {
  const classes = readClasses().filter((c) => c.examples.length);
  const n = classes.reduce((a, c) => a + c.examples.length, 0);
  const d = state.data;
  const counts = `${classes.length} class${classes.length === 1 ? "" : "es"}, ${fmtInt(n)} example${n === 1 ? "" : "s"}`;
  let text;
  if (!n) text = d ? `Training uses ${d.name}; write examples here to use them instead.` : "No examples yet: name a class and write a few examples of it, one per line.";
  else if (d?.editor === "classes") text = `${counts}: training uses these (as ${EXAMPLES_NAME}).`;
  else text = `${counts}; training uses ${d ? d.name : "nothing yet"}. Edit an example here to use these instead.`;
  setText("examples-status", text);
}

function exportAs(kind) {
  clearError("examples");
  const classes = readClasses();
  const problem = classProblems(classes);
  const rows = editorRows();
  if (!rows.length) return setText("examples-msg", "Nothing to export yet: write some examples first.");
  if (problem && !/train as one class/.test(problem)) return setText("examples-msg", problem);
  const [text, type, name] = kind === "csv" ? [toCsv(rows), "text/csv", "examples.csv"] : [toJsonl(rows), "application/jsonl", "examples.jsonl"];
  saveAs(new Blob([text], { type }), name);
  setText("examples-status", `Saved ${name}: ${fmtInt(rows.length)} examples in ${byLabel(rows).length} classes.`);
}

/**
 * Reads a CSV (text,label) or JSONL (text and label) file (or a project's examples) into the
 * editor, replacing what is there. The core checks it first, so a file the page would refuse
 * to train on is refused here with its lines named. True once imported.
 */
export async function importExamples(name, text) {
  clearError("examples");
  let v;
  try {
    v = await validate(name, text);
  } catch (e) {
    showError("examples", e);
    return false;
  }
  const refuse = (why) => (setText("examples-msg", `Not imported: ${why}`), false);
  const rowProblems = v.problems.filter((p) => p.line !== null);
  if (rowProblems.length || !v.format) return refuse(problemsLine(name, v.problems));
  if (!LABELLED_FORMATS.has(v.format)) return refuse(`${name} has no labels; the editor reads CSV with a text,label header or JSON lines with "text" and "label".`);
  const rows = v.examples ?? [];
  if (!rows.length) return refuse(`${name} holds no examples.`);
  // One example a line: a line break inside an example becomes a space.
  let joined = 0;
  $("classes").replaceChildren();
  for (const [label, group] of byLabel(rows)) {
    addClass(label, group.map((r) => (/[\r\n]/.test(r.text) ? (joined++, r.text.replace(/\s*[\r\n]+\s*/g, " ")) : r.text)));
  }
  cancelExamplesSync();
  await sync();
  const note = joined ? ` (${joined} example${joined === 1 ? "" : "s"} had line breaks, now spaces)` : "";
  setText("examples-status", `Imported ${fmtInt(rows.length)} examples in ${byLabel(rows).length} classes from ${name}${note}; training uses them (as ${EXAMPLES_NAME}).`);
  return true;
}

/** The editor as a fresh page has it: two empty classes (a new project starts here too). */
export function resetExamples() {
  cancelExamplesSync();
  $("classes").replaceChildren();
  addClass();
  addClass();
  setText("examples-msg", "");
  showExamplesStatus();
}

export function wireExamples() {
  resetExamples();
  $("classes").addEventListener("input", () => syncSoon());
  $("add-class").addEventListener("click", () => addClass().querySelector("input").focus());
  $("export-csv").addEventListener("click", () => exportAs("csv"));
  $("export-jsonl").addEventListener("click", () => exportAs("jsonl"));
  $("examples-import").addEventListener("change", async () => {
    const f = $("examples-import").files[0];
    if (f) await importExamples(f.name, await f.text());
    $("examples-import").value = ""; // the same file again is a new import
  });
}
