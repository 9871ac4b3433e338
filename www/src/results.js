// Section 4's results: after a classification run, per-class accuracy and the confusion matrix on the held-out examples, with the adapter on and off.
import { $, setText } from "./dom.js";
import { fmtInt } from "./format.js";
import { showError, clearError } from "./errors.js";
import { state } from "./state.js";

// The held-out rows are the page's own split (data.js trainingSplit), passed to
// `train` as its evaluation data; here the package's `classify` labels them with
// the adapter (`adapter: true`) and without (`adapter: false`), one call after
// the other in the worker (nothing is read from the GPU on this thread). The
// worker takes one call at a time, so a Start or Compare pressed meanwhile waits
// for the call in progress; a new run or model makes this evaluation stale.
let token = 0;

/** Hides the results (a new run, or another model). */
export function resetResults() {
  token++;
  $("results").hidden = true;
  $("results-tables").replaceChildren();
  setText("results-status", "");
  clearError("results");
}

const pct = (k, n) => `${Math.round((100 * k) / n)}%`;

function clearTables() {
  $("results").hidden = false;
  $("results-tables").replaceChildren();
  clearError("results");
}

/**
 * Classifies the run's held-out rows with and without the adapter and shows how well each did.
 * Returns what it showed, for the run's record in its project ({ held, adapted, base, labels }),
 * or null when it could not classify them.
 */
export async function showResults(split, summary) {
  const my = ++token;
  const t = state.tuner;
  const held = split.held;
  clearTables();
  setText("results-status", `Classifying the ${fmtInt(held.length)} held-out examples with the adapter and without it…`);
  try {
    const texts = held.map((r) => r.text);
    const adapted = await t.classify(texts, { adapter: true });
    const base = await t.classify(texts, { adapter: false });
    if (my !== token) return null;
    const shown = { held: held.map((r) => ({ text: r.text, label: r.label })), adapted: adapted.map((r) => r.label), base: base.map((r) => r.label), labels: summary.labels ?? null };
    showSavedResults(shown);
    return shown;
  } catch (e) {
    if (my !== token) return null;
    setText("results-status", "");
    showError("results", e);
    return null;
  }
}

/** Shows results as `showResults` returned them (a saved run's, reopened with its project). */
export function showSavedResults(r) {
  token++;
  clearTables();
  render(r.held, r.adapted, r.base, r.labels);
}

const right = (held, pred) => held.filter((r, i) => pred[i] === r.label).length;

/** Saved results in a few words, for a run's line in its project: "adapted 83%, base 33% right on 6 held-out examples". */
export const resultsSummary = (r) => `adapted ${pct(right(r.held, r.adapted), r.held.length)}, base ${pct(right(r.held, r.base), r.held.length)} right on ${fmtInt(r.held.length)} held-out examples`;

function render(held, adapted, base, runLabels) {
  // The classes in the run's order (the core's), then any the rows or predictions add.
  const classes = [...new Set([...(runLabels ?? []), ...held.map((r) => r.label), ...adapted, ...base])];
  const rows = classes.filter((c) => held.some((r) => r.label === c)); // classes with held-out examples
  const n = held.length;
  const chance = `${fmtInt(100 / classes.length)}%`;
  setText(
    "results-status",
    `On ${fmtInt(n)} held-out examples the adapted model is right ${pct(right(held, adapted), n)} of the time, the base model ${pct(right(held, base), n)} (chance: about ${chance}).`,
  );
  setText("results-base-note", `Base model: a new classifier head starts untrained, so the base model is at chance level (about ${chance} with ${classes.length} classes).`);
  const missing = classes.filter((c) => !rows.includes(c));
  // Each table scrolls sideways in its own box if it is wider than a phone (long class names);
  // the box takes the keyboard focus, so arrow keys scroll it.
  const wrap = (table) => {
    const div = el("div", { className: "table-wrap", tabIndex: 0 });
    div.setAttribute("role", "group");
    div.setAttribute("aria-label", table.caption.textContent);
    div.appendChild(table);
    return div;
  };
  $("results-tables").append(wrap(accuracyTable(held, rows, adapted, base)), wrap(confusionTable(held, classes, rows, adapted)));
  if (missing.length) {
    const p = Object.assign(document.createElement("p"), { className: "hint" });
    p.textContent = `No held-out examples of ${missing.join(", ")} (a class needs two or more examples to hold one out).`;
    $("results-tables").appendChild(p);
  }
}

const el = (tag, props = {}) => Object.assign(document.createElement(tag), props);

/** A header cell: `scope` col or row, visible `text`, and what a screen reader hears first (`spoken`). */
function th(scope, text, spoken) {
  const cell = el("th", { scope });
  if (spoken) cell.append(el("span", { className: "sr-only", textContent: spoken }));
  cell.append(text);
  return cell;
}

/** Per class: held-out examples, and the share the base and the adapted model label right. */
function accuracyTable(held, rows, adapted, base) {
  const table = el("table", { className: "results-table accuracy" });
  table.createCaption().textContent = "Per-class accuracy on the held-out examples";
  const head = table.createTHead().insertRow();
  head.append(th("col", "Class"), th("col", "Held-out examples"), th("col", "Base model"), th("col", "Adapted model"));
  head.cells[2].setAttribute("aria-describedby", "results-base-note");
  const body = table.createTBody();
  const line = (section, name, which) => {
    const idx = held.map((r, i) => (which(r) ? i : -1)).filter((i) => i >= 0);
    const tr = section.insertRow();
    tr.append(th("row", name));
    tr.insertCell().textContent = fmtInt(idx.length);
    for (const pred of [base, adapted]) {
      const cell = tr.insertCell();
      cell.textContent = pct(idx.filter((i) => pred[i] === held[i].label).length, idx.length);
      cell.className = "num-cell";
    }
    tr.cells[1].className = "num-cell";
  };
  for (const c of rows) line(body, c, (r) => r.label === c);
  line(table.createTFoot(), "All classes", () => true);
  return table;
}

/** Rows: the true class; columns: the class the adapted model predicted; cells: how many held-out examples. */
function confusionTable(held, classes, rows, adapted) {
  const table = el("table", { className: "results-table confusion" });
  table.createCaption().textContent = "Confusion matrix of the adapted model on the held-out examples (rows: true class, columns: predicted class)";
  const head = table.createTHead().insertRow();
  const corner = el("th", { scope: "col" });
  corner.append(el("span", { className: "sr-only", textContent: "True class" }), el("span", { textContent: "true ↓ / predicted →" }));
  corner.lastChild.setAttribute("aria-hidden", "true");
  head.append(corner, ...classes.map((c) => th("col", c, "predicted ")));
  const body = table.createTBody();
  const max = Math.max(1, ...rows.map((t) => held.filter((r) => r.label === t).length));
  for (const t of rows) {
    const tr = body.insertRow();
    tr.append(th("row", t, "true "));
    for (const p of classes) {
      const k = held.filter((r, i) => r.label === t && adapted[i] === p).length;
      const cell = tr.insertCell();
      cell.textContent = String(k);
      cell.className = `num-cell${t === p ? " hit" : ""}`;
      // Shade by count (the number is the content; the shade only helps the eye).
      if (k) cell.style.background = t === p ? `rgba(4, 120, 87, ${0.12 + (0.3 * k) / max})` : `rgba(185, 28, 28, ${0.1 + (0.25 * k) / max})`;
    }
  }
  return table;
}
