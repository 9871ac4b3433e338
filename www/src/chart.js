// Section 4's loss chart (uPlot): train loss, eval loss and learning rate per step.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { $ } from "./dom.js";
import { stepRange, stepTicks, lrRange, lrTicks, lrLabels } from "./ticks.js";

let chart = null;
const series = { x: [], loss: [], evalLoss: [], lr: [] };

export function resetChart() {
  for (const k of Object.keys(series)) series[k] = [];
  drawChart();
}

/** Draws a checkpoint's chart again (a resumed run continues it). */
export function restoreChart(saved) {
  for (const k of Object.keys(series)) series[k] = (saved?.[k] ?? []).slice();
  drawChart();
}

/** The chart up to `step`, as a checkpoint saves it. */
export function chartUpTo(step) {
  return Object.fromEntries(Object.entries(series).map(([k, v]) => [k, v.slice(0, series.x.lastIndexOf(step) + 1)]));
}

/** The whole chart as drawn (a run's record keeps it). */
export const chartSeries = () => chartUpTo(series.x.at(-1));

export function plotStep(e) {
  series.x.push(e.step);
  series.loss.push(e.loss);
  series.evalLoss.push(null);
  series.lr.push(e.lr);
  drawChart();
}

/** An evaluation lands on its step's point (the eval line skips the steps without one). */
export function plotEval(e) {
  const i = series.x.lastIndexOf(e.step);
  if (i >= 0) series.evalLoss[i] = e.metrics.loss;
  drawChart();
}

function chartWidth() {
  return Math.max(240, $("chart").clientWidth || 600);
}

function drawChart() {
  const data = [series.x, series.loss, series.evalLoss, series.lr];
  // The point count is for the page tests (the canvas itself cannot be read back).
  $("chart").dataset.points = String(series.x.length);
  if (chart) return chart.setData(data);
  chart = new uPlot(chartOptions(), data, $("chart"));
  new ResizeObserver(() => chart.setSize({ width: chartWidth(), height: 260 })).observe($("chart"));
}

/** Hands the axis labels drawn on the canvas to the page tests too (`data-step-ticks`, `data-lr-ticks`). */
function shown(key, labels) {
  $("chart").dataset[key] = labels.join(" ");
  return labels;
}

function chartOptions() {
  return {
    width: chartWidth(),
    height: 260,
    scales: { x: { time: false, range: (u, min, max) => stepRange(min, max) }, lr: { range: (u, min, max) => lrRange(min, max) } },
    axes: [
      // Steps are counted: whole-number ticks only, about one per 70 pixels.
      {
        label: "step",
        splits: (u, i, min, max) => stepTicks(min, max, Math.min(12, Math.max(2, Math.floor(u.width / 70)))),
        values: (u, ticks) => shown("stepTicks", ticks.map((t) => String(t))),
      },
      { label: "loss" },
      // Round rates from 0 up, each label distinct and exact (5e-4, 1e-3; 1.2e-3, 1.4e-3).
      {
        scale: "lr",
        side: 1,
        label: "learning rate",
        size: 64,
        splits: (u, i, min, max) => lrTicks(min, max, 5),
        values: (u, ticks) => shown("lrTicks", lrLabels(ticks)),
        grid: { show: false },
      },
    ],
    series: [
      { label: "step" },
      { label: "train loss", stroke: "#2563eb", width: 2 },
      { label: "eval loss", stroke: "#dc2626", width: 2, spanGaps: true, points: { show: true, size: 6 } },
      { label: "learning rate", stroke: "#9ca3af", scale: "lr", dash: [4, 4] },
    ],
  };
}
