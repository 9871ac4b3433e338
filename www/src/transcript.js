// The chat's conversation as a project saves it (chat.js holds it, projects.js writes it): JSON
// of a bounded size out, and back in with every field checked. No DOM: unit-tested in node.
//
// A transcript: { model, adapter, dropped, base, adapted }. `model` and `adapter` say what the
// conversation was held with (chat.js), `dropped` how many of its first exchanges were left out
// to keep it under the size bound, and `base` / `adapted` are each side's messages, an exchange
// being a user message and the reply to it ({ role, content, note? }: the note says why a reply
// ended early). The adapted side is empty when only the base model answered.

export const TRANSCRIPT_VERSION = 1;
// A project keeps at most this much of a conversation (JSON characters): the oldest exchanges
// go first. Replies are at most 1,024 tokens, so this holds dozens of exchanges.
export const MAX_TRANSCRIPT = 256 * 1024;

/** `t` as the JSON a project keeps, without its oldest exchanges if it is longer than `max`. */
export function transcriptJson(t, max = MAX_TRANSCRIPT) {
  const json = (k) =>
    JSON.stringify({ version: TRANSCRIPT_VERSION, model: t.model, adapter: t.adapter, dropped: t.dropped + k, base: t.base.slice(2 * k), adapted: t.adapted.slice(2 * k) });
  // The fewest exchanges to leave out (all of them, if even the last one alone is too long).
  let lo = 0;
  let hi = t.base.length / 2;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (json(mid).length <= max) hi = mid;
    else lo = mid + 1;
  }
  return json(lo);
}

/** A side's messages: user and assistant in turn, each exchange complete. */
function isSide(m) {
  return (
    Array.isArray(m) &&
    m.length % 2 === 0 &&
    m.every((x, i) => x?.role === (i % 2 ? "assistant" : "user") && typeof x.content === "string" && (x.note === undefined || typeof x.note === "string"))
  );
}

/** The transcript in `text` (what `transcriptJson` wrote); throws a SyntaxError or an Error saying what is wrong. */
export function readTranscript(text) {
  const t = JSON.parse(text);
  const ok =
    t?.version === TRANSCRIPT_VERSION &&
    typeof t.model === "string" &&
    typeof t.adapter === "string" &&
    Number.isInteger(t.dropped) &&
    t.dropped >= 0 &&
    isSide(t.base) &&
    isSide(t.adapted) &&
    (t.adapted.length === 0 || t.adapted.length === t.base.length);
  if (!ok) throw new Error("not a chat transcript this page can read");
  return { model: t.model, adapter: t.adapter, dropped: t.dropped, base: t.base, adapted: t.adapted };
}
