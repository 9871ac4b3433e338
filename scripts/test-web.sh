#!/usr/bin/env bash
# The browser tests: builds the wasm (scripts/build-web.sh) and the npm package
# (web/dist), then runs tests/web/*.test.mjs with node's test runner, driving
# headless Chromium (WebGPU on SwiftShader where there is no GPU) through
# playwright-core. It fails when no test ran, none passed, or a test file has
# no tests. The parity tests need the native CLI ($WEBPEFT_BIN).
# Extra arguments: test files to run alone (tests/web/train.test.mjs), or node --test options
# (e.g. --test-name-pattern=LoRA).
set -euo pipefail
# Tests build the native side with the `ci` profile (scripts/env.sh).
export WEBPEFT_PROFILE="${WEBPEFT_PROFILE:-ci}"
source "$(dirname "$0")/env.sh"
# wasm-opt on the main wasm only (its size is checked as shipped); the threads build is
# tested as rustc and wasm-bindgen emit it (scripts/build-web.sh). WEBPEFT_WASM_OPT=1
# tests both optimised, as `npm pack` ships them.
export WEBPEFT_WASM_OPT="${WEBPEFT_WASM_OPT:-main}"
cd "$WEBPEFT_ROOT"
bash scripts/setup-web.sh

if [ ! -x "$WEBPEFT_BIN" ]; then
  echo "== native CLI (for the adapter parity checks)"
  cargo build --profile "$WEBPEFT_PROFILE" --features cli-cpu -p webpeft
fi

echo "== wasm (scripts/build-web.sh)"
bash scripts/build-web.sh
echo "== npm package (web/dist)"
node web/build.mjs

mkdir -p tests/out
source scripts/node-tests.sh
status=0
run_node_tests web tests/web "$@" || status=$?
exit "$status"
