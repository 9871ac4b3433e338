#!/usr/bin/env bash
# Every test: the native core and CLI (CPU and wgpu backends, parity with
# transformers and PEFT, real models, bad input) and the wasm build of the core.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"
bash scripts/setup.sh

log="$(mktemp)"
echo "== native tests (cargo test --release)"
# Two test threads: the GPU tests run on lavapipe, which uses every core anyway.
cargo test --release --features cli -p webpeft -- --test-threads=2 2>&1 | tee "$log"

echo "== wasm32 build of the core"
bash scripts/check-wasm.sh

# One closing line over all test binaries (cargo prints one per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
