// Classification rows ({ text, label }): written in the shapes the core reads (CSV text,label and JSON lines), grouped and split for evaluation.
// Reading is the core's (validateData's `examples`): the page has no parser of its own.
// No DOM and no imports: the page tests load this module in node too.

/** The formats of `Tuner.validateData` this module reads (classification rows). */
export const LABELLED_FORMATS = new Set(["csv-text-label", "jsonl-text-label"]);

/** One CSV field: quoted (quotes doubled) when it holds a comma, a quote or a line break, as RFC 4180 and the core read it. */
export function csvField(s) {
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** Rows as CSV with the `text,label` header the core's parser asks for. */
export function toCsv(rows) {
  return ["text,label", ...rows.map((r) => `${csvField(r.text)},${csvField(r.label)}`)].join("\n") + "\n";
}

/** Rows as JSON lines, one `{"text": ..., "label": ...}` object per line. */
export function toJsonl(rows) {
  return rows.map((r) => JSON.stringify({ text: r.text, label: r.label })).join("\n") + "\n";
}

/** Rows grouped by label, in the order each label first appears: [[label, rows], ...]. */
export function byLabel(rows) {
  const groups = new Map();
  for (const r of rows) {
    if (!groups.has(r.label)) groups.set(r.label, []);
    groups.get(r.label).push(r);
  }
  return [...groups];
}

/** How many of a class's `n` examples are held out: the share, rounded, but at least one and never all (a class with one example trains). */
export function heldCount(n, fraction) {
  if (!(fraction > 0) || n < 2) return 0;
  return Math.min(n - 1, Math.max(1, Math.round(fraction * n)));
}

/** FNV-1a, 32 bits: a fixed, seeded order of a class's examples. */
function hash(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * The page's held-out split for classification: `heldCount` examples of each
 * class, the ones first in an order fixed by `seed` (a hash of the seed, the
 * example's place in its class and its text), so the same data, share and seed
 * always hold out the same rows. Both parts keep the rows' order.
 */
export function holdOut(rows, fraction, seed = 0) {
  const held = new Set();
  for (const [, group] of byLabel(rows)) {
    const k = heldCount(group.length, fraction);
    const order = group.map((r, i) => [hash(`${seed}\u0000${i}\u0000${r.text}`), i, r]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    for (const [, , r] of order.slice(0, k)) held.add(r);
  }
  return { train: rows.filter((r) => !held.has(r)), held: rows.filter((r) => held.has(r)) };
}
