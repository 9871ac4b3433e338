#!/usr/bin/env bash
# `npm run bench:web`: builds the native CLI, the wasm and the npm package, then
# times the same training workloads in headless Chromium (WebGPU and the wasm
# CPU backend) and natively (scripts/bench-web.mjs). A measurement, never a test.
# Arguments go to scripts/bench-web.mjs (e.g. --configs minilm --iters 3).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"
bash scripts/setup.sh
cargo build --release --features cli -p webpeft
bash scripts/build-web.sh
node web/build.mjs
node scripts/bench-web.mjs "$@"
