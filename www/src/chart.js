// Section 4's loss chart (uPlot): train loss, eval loss and learning rate per step.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { $ } from "./dom.js";

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

function chartOptions() {
  return {
    width: chartWidth(),
    height: 260,
    scales: { x: { time: false }, lr: { auto: true } },
    axes: [
      { label: "step" },
      { label: "loss" },
      { scale: "lr", side: 1, label: "learning rate", values: (u, v) => v.map((x) => x.toExponential(0)), grid: { show: false } },
    ],
    series: [
      { label: "step" },
      { label: "train loss", stroke: "#2563eb", width: 2 },
      { label: "eval loss", stroke: "#dc2626", width: 2, spanGaps: true, points: { show: true, size: 6 } },
      { label: "learning rate", stroke: "#9ca3af", scale: "lr", dash: [4, 4] },
    ],
  };
}
