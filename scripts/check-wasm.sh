#!/usr/bin/env bash
# The core must build for the browser: wasm32-unknown-unknown with the GPU
# (WebGPU) backend and no file-system or thread code.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"
RUSTFLAGS="${RUSTFLAGS:-} --cfg getrandom_backend=\"wasm_js\"" \
  cargo build --release --target wasm32-unknown-unknown -p webpeft --features gpu --lib
echo "wasm32 build of the core: ok"
