// Section 3's plan: trainable parameters and memory, estimated from the model's shape, against what the device can give.
import { $, setText } from "./dom.js";
import { fmtBytes, fmtInt } from "./format.js";
import { state } from "./state.js";
import { readOptions } from "./method.js";

export const isEncoder = (info) => /bert|roberta|electra|deberta/i.test(`${info.modelType} ${info.architecture}`);

/** The memory the backend can give: wasm32 has 4 GiB; WebGPU's largest buffer bounds one tensor. */
export function deviceLimit(device) {
  return device.backend === "webgpu" && device.maxBufferSize ? { bytes: device.maxBufferSize, what: "largest WebGPU buffer" } : { bytes: 4 * 2 ** 30, what: "WebAssembly memory" };
}

/**
 * Trainable parameters of a configuration, estimated from the model's shape
 * (hidden size h, layers L, intermediate ~4h; PEFT's default targets: BERT
 * query/value, decoders q_proj/v_proj, counted as h×h). The core's exact count
 * arrives with the start event.
 */
function estimateTrainable(info, o) {
  const h = info.hiddenSize, L = info.numLayers, ff = 4 * h;
  const enc = isEncoder(info);
  const targets = o.targets?.length ?? 2;
  let n = 0;
  switch (o.method) {
    case "lora": n = L * targets * o.r * 2 * h; break;
    case "dora": n = L * targets * (o.r * 2 * h + h); break;
    case "bitfit": n = enc ? L * (9 * h + ff) : L * 2 * h; break; // every bias (decoders have few: the norms)
    case "ia3": n = L * (2 * h + ff); break; // key, value, feed-forward down projection
    case "prompt": n = o.virtualTokens * h; break;
    case "prefix": n = o.virtualTokens * L * 2 * h; break;
  }
  if (o.task === "seq-cls") {
    const k = state.labels?.length || info.numLabels || 2;
    n += h * k + k; // the classification head is trained too (PEFT's modules_to_save)
  }
  return n;
}

export function updateEstimate() {
  const t = state.tuner;
  if (!t) return;
  const o = readOptions();
  const n = estimateTrainable(t.info, o);
  const { hiddenSize: h, numLayers: L, vocabSize: V } = t.info;
  // Weights + (adapter weights, gradients, two AdamW moments) + activations kept for the backward pass.
  const acts = o.batch * o.seqLen * (L * 24 * h + (o.task === "causal-lm" ? V : 0)) * 4;
  const total = (t.info.estimatedBytes ?? t.info.numParameters * 4) + n * 16 + acts;
  const lim = deviceLimit(t.device);
  setText("est-params", `≈ ${fmtInt(n)} (estimate)`);
  setText("est-share", `≈ ${((100 * n) / t.info.numParameters).toFixed(3)}% of ${fmtInt(t.info.numParameters)}`);
  setText("est-memory", `≈ ${fmtBytes(total)} (estimate) of ${fmtBytes(lim.bytes)} available${total > lim.bytes ? ": too much, lower batch or sequence length" : ""}`);
}

export function wireEstimate() {
  document.querySelectorAll("#method-section input, #method-section select, #eval-split").forEach((el) => el.addEventListener("input", updateEstimate));
}
