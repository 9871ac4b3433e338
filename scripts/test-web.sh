#!/usr/bin/env bash
# The browser tests: builds the wasm (scripts/build-web.sh) and the npm package
# (web/dist), then runs tests/web/*.test.mjs with node's test runner, driving
# headless Chromium (WebGPU on SwiftShader where there is no GPU) through
# playwright-core. The parity tests need the native CLI ($WEBPEFT_BIN).
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
log="$(mktemp)"
echo "== browser tests (node --test tests/web/)"
# One file at a time: each starts its own Chromium, and SwiftShader uses every core.
set +e
node --test --test-concurrency=1 --test-reporter=spec "$@" tests/web/ 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# The spec reporter ends with "ℹ pass N" / "ℹ fail M" / "ℹ skipped K".
awk '/^ℹ pass / { p = $3 } /^ℹ fail / { f = $3 } /^ℹ skipped / { k = $3 }
  END { printf "web tests: %d passed, %d failed%s\n", p, f, k ? sprintf(", %d skipped", k) : "" }' "$log"
rm -f "$log"
exit "$status"
