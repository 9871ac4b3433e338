// Headless Chromium through playwright-core, as the browser tests and
// `npm run bench:web` drive it: Debian's /usr/bin/chromium with WebGPU enabled
// (SwiftShader where there is no GPU) and no background networking.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const CHROMIUM = process.env.WEBPEFT_CHROMIUM || "/usr/bin/chromium";

export const CHROMIUM_ARGS = [
  "--enable-unsafe-webgpu",
  "--no-sandbox",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-quic",
];

/**
 * Headless Chromium with a fresh profile. Returns { context, page, console, close }.
 * `initScript` runs in the page before its own scripts (for example to hide WebGPU).
 * Browser console lines are kept in `console` (and echoed with WEBPEFT_TEST_VERBOSE=1).
 */
export async function launch({ initScript } = {}) {
  const { chromium } = await import("playwright-core");
  const profile = mkdtempSync(join(tmpdir(), "webpeft-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    acceptDownloads: true,
    viewport: { width: 1000, height: 700 },
  });
  if (initScript) await context.addInitScript(initScript);
  const page = context.pages()[0] || (await context.newPage());
  const consoleLines = [];
  const onConsole = (msg) => {
    const line = `[${msg.type()}] ${msg.text()}`;
    consoleLines.push(line);
    if (process.env.WEBPEFT_TEST_VERBOSE) console.error("browser:", line);
  };
  page.on("console", onConsole);
  page.on("pageerror", (e) => onConsole({ type: () => "pageerror", text: () => String((e && e.stack) || e) }));
  // Workers' console output comes through the page too.
  page.on("worker", (w) => w.on("console", onConsole));
  return {
    context,
    page,
    console: consoleLines,
    close: async () => {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
