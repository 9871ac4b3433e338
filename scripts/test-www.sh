#!/usr/bin/env bash
# The page tests: drive www/ in headless Chromium (playwright-core) as a person
# would: load the bundled MiniLM, train on the sample CSV, pause/resume/stop,
# compare, download, reload and resume, bad inputs, and the layout at laptop and
# phone sizes. Expects the package built (web/dist, by scripts/test-web.sh or
# npm start); builds the page itself. Screenshots go to docs/screenshots/.
# It fails when no test ran, none passed, or a test file has no tests.
# Extra arguments: test files to run alone, or node --test options (e.g.
# --test-name-pattern=layout).
set -euo pipefail
# Tests build the native side with the `ci` profile (scripts/env.sh).
export WEBPEFT_PROFILE="${WEBPEFT_PROFILE:-ci}"
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"
if [ ! -f web/dist/index.js ] || [ ! -f web/dist/webpeft_bg.wasm ]; then
  echo "test-www: web/dist is not built; run bash scripts/build-web.sh && node web/build.mjs (or npm start) first" >&2
  exit 1
fi
node -e 'require.resolve("uplot/package.json")' 2>/dev/null || npm ci --no-audit --no-fund --loglevel=error
node www/build.mjs
mkdir -p tests/out docs/screenshots
source scripts/node-tests.sh
status=0
run_node_tests page tests/www "$@" || status=$?
exit "$status"
