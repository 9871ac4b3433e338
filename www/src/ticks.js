// The loss chart's axis ticks: whole steps on the step axis, and distinct, exact labels on the learning-rate axis.
// No DOM and no imports: the page tests load this module in node too.

/** The smallest of 1, 2, 5 × 10^k (k ≥ `minExp`) that is at least `raw`. */
function niceStep(raw, minExp = -Infinity) {
  if (!(raw > 0)) return 10 ** Math.max(minExp, 0);
  let e = Math.max(minExp, Math.floor(Math.log10(raw)));
  for (;;) {
    for (const m of [1, 2, 5]) {
      const s = m * 10 ** e;
      if (s >= raw * (1 - 1e-9)) return s;
    }
    e++;
  }
}

/** Multiples of `step` in [min, max], without float noise. */
function multiples(min, max, step) {
  const out = [];
  const last = Math.floor(max / step + 1e-9);
  for (let k = Math.ceil(min / step - 1e-9); k <= last; k++) out.push(Number((k * step).toPrecision(12)));
  return out;
}

/** The step axis's range: the steps shown, widened by one on each side for a single step (or [0, 1] for none). */
export function stepRange(min, max) {
  if (min == null || max == null || !Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  return min === max ? [Math.max(0, min - 1), max + 1] : [min, max];
}

/** Ticks on the step axis: whole numbers only (steps are counted), at most `maxTicks`, multiples of 1, 2, 5, 10, ... */
export function stepTicks(min, max, maxTicks = 8) {
  const lo = Math.ceil(min), hi = Math.floor(max);
  if (!(hi >= lo)) return [];
  let step = niceStep((hi - lo) / Math.max(1, maxTicks - 1), 0);
  while (multiples(lo, hi, step).length > maxTicks) step = niceStep(step * 1.01, 0);
  const ticks = multiples(lo, hi, step);
  // A round step can leave one tick or none (steps 1 to 7, two ticks): the ends then.
  return ticks.length < 2 && hi > lo && maxTicks >= 2 ? [lo, hi] : ticks;
}

/** The learning-rate axis's range: from 0 (warm-up starts there, decay ends there) to a little above the largest rate. */
export function lrRange(min, max) {
  return [0, Number.isFinite(max) && max > 0 ? max * 1.1 : 1e-3];
}

/** Ticks on the learning-rate axis: round multiples of 1, 2 or 5 × 10^k in [min, max], at most `maxTicks`. */
export function lrTicks(min, max, maxTicks = 5) {
  if (!(Number.isFinite(min) && Number.isFinite(max) && max > min)) return Number.isFinite(min) ? [min] : [];
  let step = niceStep((max - min) / Math.max(1, maxTicks - 1));
  while (multiples(min, max, step).length > maxTicks) step = niceStep(step * 1.01);
  return multiples(min, max, step);
}

/** "2.50e-4" → "2.5e-4", "1.0e-3" → "1e-3". */
const trimMantissa = (s) => s.replace(/\.?0+e/, "e").replace("e+", "e");

/**
 * Labels for learning-rate ticks: "0", then the fewest significant digits that
 * make every label distinct and exact (each reads back as its tick), e.g.
 * 0, 5e-4, 1e-3 or 1.2e-3, 1.4e-3, 1.6e-3 (never "1e-3 1e-3").
 */
export function lrLabels(ticks) {
  for (let d = 0; d <= 8; d++) {
    const labels = ticks.map((v) => (v === 0 ? "0" : trimMantissa(v.toExponential(d))));
    const exact = labels.every((l, i) => Math.abs(Number(l) - ticks[i]) <= Math.abs(ticks[i]) * 1e-9);
    if (exact && new Set(labels).size === labels.length) return labels;
  }
  return ticks.map((v) => String(v));
}
