// The chat conversation as a project keeps it (www/src/transcript.js), checked in node: written
// and read back unchanged, kept under the size bound by leaving out the oldest exchanges, and a
// file that is not such a transcript refused with a reason.
import { test } from "node:test";
import assert from "node:assert/strict";
import { transcriptJson, readTranscript, MAX_TRANSCRIPT } from "../../www/src/transcript.js";

/** `n` exchanges on each side; every third reply was stopped. */
function conversation(n, { userChars = 20, adapted = true } = {}) {
  const side = (who) =>
    Array.from({ length: n }, (_, i) => [
      { role: "user", content: `question ${i} ${"x".repeat(userChars)}` },
      { role: "assistant", content: `${who} reply ${i}`, ...(i % 3 === 2 && { note: "(stopped)" }) },
    ]).flat();
  return { model: "smollm2", adapter: "p-abc/2", dropped: 0, base: side("base"), adapted: adapted ? side("adapted") : [] };
}

test("a transcript is written and read back as it was, the base-only kind too", () => {
  for (const t of [conversation(3), conversation(2, { adapted: false }), { ...conversation(1), dropped: 4, adapter: "none" }]) {
    const json = transcriptJson(t);
    assert.ok(json.length < MAX_TRANSCRIPT);
    assert.deepEqual(readTranscript(json), t);
  }
});

test("over the bound, the oldest exchanges are left out (as few as needed) and counted", () => {
  const t = conversation(400, { userChars: 1000 });
  const json = transcriptJson(t);
  assert.ok(json.length <= MAX_TRANSCRIPT, `${json.length}`);
  const r = readTranscript(json);
  assert.ok(r.dropped > 0);
  assert.equal(r.base.length, 2 * (400 - r.dropped));
  assert.deepEqual(r.base, t.base.slice(2 * r.dropped), "the last exchanges, in order");
  assert.deepEqual(r.adapted, t.adapted.slice(2 * r.dropped), "both sides in step");
  // One exchange fewer left out would not fit.
  const k = r.dropped - 1;
  assert.ok(transcriptJson({ ...t, dropped: k, base: t.base.slice(2 * k), adapted: t.adapted.slice(2 * k) }, Infinity).length > MAX_TRANSCRIPT);
  // Exchanges left out before (a conversation restored and gone on with) add up.
  assert.equal(readTranscript(transcriptJson({ ...t, dropped: 5 })).dropped, r.dropped + 5);
  // A bound of a few characters leaves out every exchange and still says how many there were.
  const none = readTranscript(transcriptJson(conversation(3), 10));
  assert.deepEqual([none.dropped, none.base, none.adapted], [3, [], []]);
});

test("a file that is not a transcript is refused with the reason", () => {
  assert.throws(() => readTranscript("{ not json"), SyntaxError);
  const good = JSON.parse(transcriptJson(conversation(2)));
  const bad = [
    { ...good, version: 2 },
    { ...good, model: undefined },
    { ...good, dropped: -1 },
    { ...good, base: good.base.slice(0, 3) }, // an exchange cut in half
    { ...good, base: [good.base[1], good.base[0], ...good.base.slice(2)] }, // a reply before its question
    { ...good, adapted: good.adapted.slice(2) }, // sides out of step
    { ...good, base: [{ role: "user", content: 7 }, good.base[1]] },
    { ...good, adapted: [good.adapted[0], { ...good.adapted[1], note: 1 }, ...good.adapted.slice(2)] },
    [],
    null,
  ];
  for (const t of bad) assert.throws(() => readTranscript(JSON.stringify(t)), /^Error: not a chat transcript this page can read$/, JSON.stringify(t)?.slice(0, 80));
});
