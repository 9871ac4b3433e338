// Families added in issue #10, through the npm package in the browser: the tiny Gemma 3 GGUF
// (SentencePiece vocabulary, sliding and global layers) gives transformers' logits and token ids
// on WebGPU and on the wasm CPU backend, with nothing in the package or page naming the family.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { openTestPage, requireBuild, helper, inPageOf, maxAbsDiff, readSafetensors, ROOT } from "./harness.mjs";

const DIR = "tests/fixtures/gguf/tiny-gemma3";
let b;
let wp;

before(async () => {
  requireBuild();
  b = await openTestPage();
  wp = helper(b.page);
});
after(async () => {
  await b?.close();
});

/** Runs f(tuner, arg) in the page (harness.inPageOf). */
const inPage = (f, arg) => inPageOf(b.page)(f, arg);

test("Gemma 3 GGUF with a SentencePiece vocabulary: transformers' logits and token ids on WebGPU and the wasm CPU backend", { timeout: 20 * 60_000 }, async () => {
  const ref = readSafetensors(readFileSync(join(ROOT, DIR, "reference.safetensors")));
  const want = JSON.parse(readFileSync(join(ROOT, DIR, "tokenizer.json"), "utf8"));
  const ids = ref.input_ids.data;
  assert.equal(ids.length, 12);
  for (const backend of ["webgpu", "cpu"]) {
    const loaded = await wp("load", [`/${DIR}/model.gguf`], { backend });
    assert.equal(loaded.error, undefined, JSON.stringify(loaded.error));
    const info = await inPage((t) => t.info);
    assert.equal(info.error, undefined, JSON.stringify(info.error));
    assert.equal(JSON.stringify(info.value).includes("Gemma3ForCausalLM"), true, JSON.stringify(info.value));
    const out = await inPage((t, x) => t.forward(x), ids);
    assert.equal(out.error, undefined, JSON.stringify(out.error));
    assert.equal(out.value.length, ref.logits.data.length);
    const diff = maxAbsDiff(out.value, ref.logits.data);
    assert.ok(diff <= 1e-4, `${backend}: max |logits - transformers'| = ${diff}`);
    for (const c of want.cases) {
      const got = await inPage((t, x) => t.tokenize(x), c.text);
      assert.equal(got.error, undefined, JSON.stringify(got.error));
      assert.deepEqual(got.value, c.ids, `${backend}: tokenize(${JSON.stringify(c.text)})`);
    }
  }
});
