#!/usr/bin/env bash
# The browser tests: builds the wasm (scripts/build-web.sh) and the npm package
# (web/dist), then runs tests/web/*.test.mjs with node's test runner, driving
# headless Chromium (WebGPU on SwiftShader where there is no GPU) through
# playwright-core. It fails when no test ran, none passed, or a test file has
# no tests. The parity tests need the native CLI ($WEBPEFT_BIN).
# Extra arguments go to node --test (e.g. --test-name-pattern=LoRA).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"
bash scripts/setup-web.sh

if [ ! -x "$WEBPEFT_BIN" ]; then
  echo "== native CLI (for the adapter parity checks)"
  cargo build --release --features cli -p webpeft
fi

echo "== wasm (scripts/build-web.sh)"
bash scripts/build-web.sh
echo "== npm package (web/dist)"
node web/build.mjs

mkdir -p tests/out
# An explicit file list: node >= 21 takes a directory argument as a file and fails.
shopt -s nullglob
files=(tests/web/*.test.mjs)
shopt -u nullglob
if [ "${#files[@]}" -eq 0 ]; then
  echo "test-web: no test files (tests/web/*.test.mjs)" >&2
  exit 1
fi
log="$(mktemp)"
echo "== browser tests (node --test tests/web/*.test.mjs: ${#files[@]} files)"
# One file at a time: each starts its own Chromium, and SwiftShader uses every core.
set +e
node --test --test-concurrency=1 --test-reporter=spec "$@" "${files[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# A file that registers no test is itself reported as one passing test
# ("✔ <path>.test.mjs (..ms)"): it is counted apart, not as a pass.
read -r ran p f k empty < <(awk '/^ℹ tests / { t = $3 } /^ℹ pass / { p = $3 } /^ℹ fail / { f = $3 } /^ℹ skipped / { k = $3 }
  /^✔ .*\.test\.mjs \([0-9.]+ms\)$/ { e++ }
  END { print t - e, p - e, f + 0, k + 0, e + 0 }' "$log")
echo "web tests: $p passed, $f failed$([ "$k" -gt 0 ] && echo ", $k skipped")$([ "$empty" -gt 0 ] && echo ", $empty files without tests")"
rm -f "$log"
# Zero tests run (a bad pattern, no summary because node crashed) or a test
# file without tests is a failure, not a pass.
if [ "$status" -eq 0 ] && { [ "$ran" -le 0 ] || [ "$p" -le 0 ] || [ "$empty" -gt 0 ]; }; then
  echo "test-web: $p of $ran tests passed, $empty files without tests; failing" >&2
  status=1
fi
exit "$status"
