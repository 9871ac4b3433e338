// The page at a laptop size (1280×800) and a phone size (390×844): no
// horizontal scrolling, and the main controls are there and usable.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { openPage, loadMiniLm, SHOTS } from "./helpers.mjs";

for (const [name, viewport] of [["desktop", { width: 1280, height: 800 }], ["phone", { width: 390, height: 844 }]]) {
  test(`layout at ${viewport.width}×${viewport.height}`, { timeout: 90_000 }, async () => {
    const b = await openPage({ viewport });
    try {
      const { page } = b;
      const overflow = () => page.evaluate(() => ({ sw: document.scrollingElement.scrollWidth, iw: innerWidth }));
      let o = await overflow();
      assert.ok(o.sw <= o.iw, `empty page: scrollWidth ${o.sw} > innerWidth ${o.iw}`);
      await loadMiniLm(page);
      await page.getByRole("button", { name: "Sample: support tickets (CSV, 60 rows)" }).click();
      await page.locator("#data-status").filter({ hasText: /CSV, 60 rows/ }).waitFor();
      await page.getByText("Advanced settings").click();
      o = await overflow();
      assert.ok(o.sw <= o.iw, `with a model and data: scrollWidth ${o.sw} > innerWidth ${o.iw}`);
      for (const [role, label] of [
        ["button", "Load model"],
        ["button", "Start"],
        ["button", "Pause"],
        ["button", "Stop"],
        ["button", "Compare base and adapted"],
        ["button", "Download adapter"],
        ["combobox", "Method"],
        ["slider", "Held out for evaluation"],
      ]) {
        const el = page.getByRole(role, { name: label, exact: true });
        await el.scrollIntoViewIfNeeded();
        assert.ok(await el.isVisible(), `${role} "${label}" visible`);
        const box = await el.boundingBox();
        assert.ok(box.x >= 0 && box.x + box.width <= viewport.width + 0.5, `${label} inside the viewport horizontally`);
      }
      await page.evaluate(() => window.scrollTo(0, 0));
      if (name === "phone") await page.screenshot({ path: join(SHOTS, "phone.png"), fullPage: false });
    } finally {
      await b.close();
    }
  });
}
