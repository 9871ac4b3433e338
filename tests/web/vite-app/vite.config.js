// The Vite setup web/README.md describes: nothing for the package itself (Vite 8.4's dev
// server serves it from node_modules without an optimizeDeps setting: tests/web/vite.test.mjs
// checks both the build and the dev server), and the COOP/COEP headers that make the page
// cross-origin isolated for the CPU backend's threads.
const isolated = { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" };
export default {
  server: { headers: isolated },
  preview: { headers: isolated },
};
