// Errors as the page shows them: a sentence per error, in each section's message line (#<section>-msg).
import { WebPeftError } from "/web/dist/index.js";
import { setText } from "./dom.js";

const WHAT = {
  format: "The file is malformed",
  unsupported: "Not supported",
  input: "Please check the input",
  device: "This device cannot run it",
  io: "A file could not be read or downloaded",
  crash: "The engine crashed; load the model again",
};

/** A user-facing sentence for any error; WebPeftError's kind and line say what to do. */
export function explain(e) {
  if (!(e instanceof WebPeftError) && !e?.kind) return String(e?.message ?? e);
  // The core's messages read "source: line N: what"; say where once, then what.
  let msg = e.message;
  if (e.source && msg.startsWith(`${e.source}: `)) msg = msg.slice(e.source.length + 2);
  if (e.line) msg = msg.replace(new RegExp(`^line ${e.line}: `), "");
  const where = e.line ? ` in ${e.source ?? "the data"}, line ${e.line}` : e.source ? ` (${e.source})` : "";
  return `${WHAT[e.kind] ?? "Error"}${where}: ${msg}`;
}

export function showError(section, e) {
  console.error(e);
  setText(`${section}-msg`, e ? explain(e) : "");
}

export const clearError = (section) => setText(`${section}-msg`, "");
