// The loss chart's axis ticks (www/src/ticks.js, what chart.js hands uPlot), checked
// in node: whole numbers on the step axis for runs of any length, and distinct,
// exact, well-formatted labels on the learning-rate axis for the schedules the
// page offers (no "1e-3 1e-3").
import { test } from "node:test";
import assert from "node:assert/strict";
import { stepRange, stepTicks, lrRange, lrTicks, lrLabels } from "../../www/src/ticks.js";

test("step ticks are whole, distinct, ascending steps inside the axis, never more than asked", () => {
  for (const steps of [1, 2, 3, 5, 6, 7, 10, 21, 60, 99, 200, 1000, 12345]) {
    for (const maxTicks of [2, 4, 5, 8, 12]) {
      const [min, max] = stepRange(1, steps);
      const ticks = stepTicks(min, max, maxTicks);
      const what = `${steps} steps, at most ${maxTicks} ticks: ${ticks}`;
      assert.ok(ticks.length >= 1 && ticks.length <= maxTicks, what);
      assert.ok(ticks.every(Number.isInteger), what);
      assert.ok(ticks.every((t, i) => i === 0 || t > ticks[i - 1]), what);
      assert.ok(ticks[0] >= min && ticks.at(-1) <= max, what);
      // As drawn: String(tick) has no decimal point.
      assert.ok(ticks.map(String).every((s) => /^\d+$/.test(s)), what);
    }
  }
  // A short run shows every step; a range with fractional ends still only whole ones.
  assert.deepEqual(stepTicks(...stepRange(1, 6), 8), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(stepTicks(0.3, 3.7, 10), [1, 2, 3]);
  assert.deepEqual(stepRange(4, 4), [3, 5]);
  assert.deepEqual(stepRange(null, null), [0, 1]);
});

/** The learning rates of a run: a schedule from `lr` over `steps`, with `warmup` steps. */
function rates(lr, steps, schedule, warmup = 0) {
  return Array.from({ length: steps }, (_, i) => {
    if (i < warmup) return (lr * (i + 1)) / warmup;
    const p = (i - warmup) / Math.max(1, steps - warmup);
    return schedule === "constant" ? lr : schedule === "linear" ? lr * (1 - p) : (lr * (1 + Math.cos(Math.PI * p))) / 2;
  });
}

test("learning-rate ticks: round values from 0, labels distinct and each reading back as its tick", () => {
  const seen = [];
  for (const lr of [1e-5, 5e-5, 2e-4, 1e-3, 3e-3, 5e-3, 1e-2, 3e-2, 0.1]) {
    for (const schedule of ["constant", "linear", "cosine"]) {
      for (const [steps, warmup] of [[6, 0], [21, 0], [60, 5], [200, 20]]) {
        const r = rates(lr, steps, schedule, warmup);
        const [min, max] = lrRange(Math.min(...r), Math.max(...r));
        const ticks = lrTicks(min, max, 5);
        const labels = lrLabels(ticks);
        const what = `lr ${lr} ${schedule}: ${ticks} as ${labels}`;
        assert.ok(min === 0 && max >= lr, what);
        assert.ok(ticks.length >= 2 && ticks.length <= 5, what);
        assert.ok(ticks[0] >= min && ticks.at(-1) <= max, what);
        assert.equal(new Set(labels).size, labels.length, `repeated labels: ${what}`);
        labels.forEach((l, i) => assert.ok(Math.abs(Number(l) - ticks[i]) <= 1e-12, `"${l}" is not ${ticks[i]}: ${what}`));
        // Well formatted: 0 or d[.d]e-k, no padding zeros ("1.0e-3") and no float noise.
        assert.ok(labels.every((l) => /^(0|[1-9](\.\d*[1-9])?e-?\d+)$/.test(l)), what);
        // The largest rate is within one tick step of the top tick.
        assert.ok(lr - ticks.at(-1) <= ticks[1] - ticks[0] + 1e-15, what);
        seen.push(labels.join(" "));
      }
    }
  }
  assert.deepEqual(lrLabels(lrTicks(...lrRange(1e-3, 1e-3), 5)), ["0", "5e-4", "1e-3"]);
});

test("learning-rate labels need more digits only where ticks would read alike", () => {
  assert.deepEqual(lrLabels([0, 5e-4, 1e-3]), ["0", "5e-4", "1e-3"]);
  assert.deepEqual(lrLabels([1.2e-3, 1.4e-3, 1.6e-3]), ["1.2e-3", "1.4e-3", "1.6e-3"]);
  // toExponential(0) would write these as "1e-3 2e-3 2e-3" (the chart's old labels).
  assert.deepEqual(lrLabels([1e-3, 1.5e-3, 2e-3]), ["1e-3", "1.5e-3", "2e-3"]);
  assert.deepEqual(lrLabels([9.5e-4, 1e-3, 1.05e-3]), ["9.5e-4", "1e-3", "1.05e-3"]);
});
