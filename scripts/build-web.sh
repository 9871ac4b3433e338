#!/usr/bin/env bash
# Builds the core for the browser: wasm32 with the `web` bindings (WebGPU via
# wgpu, and burn's Flex CPU backend), then wasm-bindgen's `web` target into
# web/pkg/. Prints the wasm size, raw and gzip.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"

# wasm-bindgen-cli at the exact version of the crate (installed by setup-web.sh).
want="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)"
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
  bash scripts/setup-web.sh
fi

echo "== cargo build (wasm32, features web)"
# simd128: Flex's CPU kernels vectorise in the browser. The cdylib crate type
# is asked for here only, so native builds do not link one.
RUSTFLAGS="${RUSTFLAGS:-} --cfg getrandom_backend=\"wasm_js\" -C target-feature=+simd128" \
  cargo rustc --release --target wasm32-unknown-unknown -p webpeft --features web --lib --crate-type cdylib

wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/webpeft.wasm"
rm -rf web/pkg
wasm-bindgen --target web --out-dir web/pkg --out-name webpeft "$wasm"
raw=$(stat -c %s web/pkg/webpeft_bg.wasm)
gz=$(gzip -9 -c web/pkg/webpeft_bg.wasm | wc -c)
awk -v r="$raw" -v g="$gz" 'BEGIN { printf "web/pkg/webpeft_bg.wasm: %.1f MB raw, %.1f MB gzip\n", r / 1e6, g / 1e6 }'
