#!/usr/bin/env bash
# Every test: the native core and CLI (CPU and wgpu backends, parity with
# transformers, real models, bad input) and the wasm build of the core.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"
bash scripts/setup.sh

echo "== native tests (cargo test --release)"
# Two test threads: the GPU tests run on lavapipe, which uses every core anyway.
cargo test --release --features cli -p webpeft -- --test-threads=2

echo "== wasm32 build of the core"
bash scripts/check-wasm.sh
