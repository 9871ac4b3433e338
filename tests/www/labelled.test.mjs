// The examples editor's files and the page's held-out split (www/src/labelled.js),
// checked in node: CSV and JSON lines written as the core reads them, and a split that
// holds out each class's share, the same rows every time.
import { test } from "node:test";
import assert from "node:assert/strict";
import { toCsv, toJsonl, holdOut, heldCount, byLabel } from "../../www/src/labelled.js";

const TRICKY = [
  { text: 'She said "hi", then left', label: "quote, comma" },
  { text: "plain text", label: "plain" },
  { text: '"starts with a quote', label: "plain" },
  { text: "ends with a quote\"", label: "x" },
  { text: "  leading spaces kept", label: "x" },
  { text: "üñíçødé ✓ 😀", label: "unicode" },
];

test("CSV and JSON lines are written as the core reads them: quotes doubled, fields with commas or quotes quoted", () => {
  // Reading them back is the core's (validateData's `examples`): examples.test.mjs exports these
  // shapes from the page and imports them again through the core.
  const csv = toCsv(TRICKY);
  assert.ok(csv.startsWith("text,label\n"));
  assert.ok(csv.includes('"She said ""hi"", then left","quote, comma"\n'), csv);
  assert.ok(csv.includes('"""starts with a quote",plain\n') && csv.includes('"ends with a quote""",x\n'), csv);
  assert.ok(csv.includes("  leading spaces kept,x\n"), csv);
  assert.deepEqual(toJsonl(TRICKY).trim().split("\n").map((l) => JSON.parse(l)), TRICKY);
});

test("the held-out split: each class's share (at least one, never all), fixed by the seed", () => {
  assert.deepEqual([1, 2, 3, 6, 10, 20].map((n) => heldCount(n, 0.1)), [0, 1, 1, 1, 1, 2]);
  assert.deepEqual([1, 2, 5, 6].map((n) => heldCount(n, 0.5)), [0, 1, 3, 3]); // halves round up
  assert.equal(heldCount(10, 0), 0);
  assert.equal(heldCount(4, 1), 3);
  const rows = [];
  for (const [label, n] of [["a", 20], ["b", 7], ["c", 1], ["d", 2]]) for (let i = 0; i < n; i++) rows.push({ text: `${label} example ${i}`, label });
  const { train, held } = holdOut(rows, 0.2, 0);
  const per = (rs) => Object.fromEntries(byLabel(rs).map(([l, g]) => [l, g.length]));
  assert.deepEqual(per(held), { a: 4, b: 1, d: 1 });
  assert.equal(train.length + held.length, rows.length);
  assert.ok(held.every((r) => !train.includes(r)), "no row in both parts");
  assert.ok(train.every((r, i) => i === 0 || rows.indexOf(r) > rows.indexOf(train[i - 1])), "train keeps the rows' order");
  // The same data, share and seed: the same rows; another seed: (almost surely) others.
  assert.deepEqual(holdOut(rows.map((r) => ({ ...r })), 0.2, 0).held, held);
  const other = holdOut(rows, 0.2, 7).held;
  assert.deepEqual(per(other), per(held));
  assert.notDeepEqual(other.map((r) => r.text), held.map((r) => r.text));
});
