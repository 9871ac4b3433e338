#!/usr/bin/env bash
# The page tests: drive www/ in headless Chromium (playwright-core) as a person
# would: load the bundled MiniLM, train on the sample CSV, pause/resume/stop,
# compare, download, reload and resume, bad inputs, and the layout at laptop and
# phone sizes. Expects the package built (web/dist, by scripts/test-web.sh or
# npm start); builds the page itself. Screenshots go to docs/screenshots/.
# It fails when no test ran, none passed, or a test file has no tests.
# Extra arguments go to node --test (e.g. --test-name-pattern=layout).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"
if [ ! -f web/dist/index.js ] || [ ! -f web/dist/webpeft_bg.wasm ]; then
  echo "test-www: web/dist is not built; run bash scripts/build-web.sh && node web/build.mjs (or npm start) first" >&2
  exit 1
fi
node -e 'require.resolve("uplot/package.json")' 2>/dev/null || npm ci --no-audit --no-fund --loglevel=error
node www/build.mjs
mkdir -p tests/out docs/screenshots
# An explicit file list: node >= 21 takes a directory argument as a file and fails.
shopt -s nullglob
files=(tests/www/*.test.mjs)
shopt -u nullglob
if [ "${#files[@]}" -eq 0 ]; then
  echo "test-www: no test files (tests/www/*.test.mjs)" >&2
  exit 1
fi
log="$(mktemp)"
echo "== page tests (node --test tests/www/*.test.mjs: ${#files[@]} files)"
set +e
# One file at a time: each starts its own Chromium on a 2-core machine.
node --test --test-concurrency=1 --test-reporter=spec "$@" "${files[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# A file that registers no test is itself reported as one passing test
# ("✔ <path>.test.mjs (..ms)"): it is counted apart, not as a pass.
read -r ran p f k empty < <(awk '/^ℹ tests / { t = $3 } /^ℹ pass / { p = $3 } /^ℹ fail / { f = $3 } /^ℹ skipped / { k = $3 }
  /^✔ .*\.test\.mjs \([0-9.]+ms\)$/ { e++ }
  END { print t - e, p - e, f + 0, k + 0, e + 0 }' "$log")
echo "page tests: $p passed, $f failed$([ "$k" -gt 0 ] && echo ", $k skipped")$([ "$empty" -gt 0 ] && echo ", $empty files without tests")"
rm -f "$log"
# Zero tests run (a bad pattern, no summary because node crashed) or a test
# file without tests is a failure, not a pass.
if [ "$status" -eq 0 ] && { [ "$ran" -le 0 ] || [ "$p" -le 0 ] || [ "$empty" -gt 0 ]; }; then
  echo "test-www: $p of $ran tests passed, $empty files without tests; failing" >&2
  status=1
fi
exit "$status"
