#!/usr/bin/env bash
# The CI tests: the native core and CLI on the CPU backend (parity with transformers
# and PEFT, real models, bad input; built without wgpu, whose native tests are
# `npm run test:gpu`), then the wasm build and the browser tests (headless Chromium on
# WebGPU and the wasm CPU backend) and the web page's tests.
set -euo pipefail
# Tests build the native side with the `ci` profile (scripts/env.sh).
export WEBPEFT_PROFILE="${WEBPEFT_PROFILE:-ci}"
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"
bash scripts/setup.sh

log="$(mktemp)"
echo "== native tests (cargo test --profile $WEBPEFT_PROFILE)"
# Two test threads: Flex runs its kernels on every core anyway.
cargo test --profile "$WEBPEFT_PROFILE" --features cli-cpu -p webpeft -- --test-threads=2 2>&1 | tee "$log"

echo "== browser: wasm build, npm package, tests"
weblog="$(mktemp)"
set +e
bash scripts/test-web.sh 2>&1 | tee "$weblog"
web_status=${PIPESTATUS[0]}
echo "== the web page (tests/www)"
bash scripts/test-www.sh 2>&1 | tee -a "$weblog"
page_status=${PIPESTATUS[0]}
set -e

# One closing line over all test binaries (cargo prints one per binary) and the browser tests.
read -r native_pass native_fail < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { print p + 0, f + 0 }' "$log")
echo "native tests: $native_pass passed, $native_fail failed"
grep '^web tests:' "$weblog" || echo "web tests: did not finish"
grep '^page tests:' "$weblog" || echo "page tests: did not finish"
rm -f "$log" "$weblog"
# cargo exits 0 when a filter matched nothing: no passed native test is a failure too.
if [ "$native_pass" -eq 0 ]; then
  echo "native tests: none passed; failing" >&2
  exit 1
fi
[ "$web_status" -eq 0 ] && [ "$page_status" -eq 0 ]
