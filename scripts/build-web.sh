#!/usr/bin/env bash
# Builds the core for the browser: wasm32 with the `web` bindings (WebGPU via
# wgpu, and burn's Flex CPU backend), then wasm-bindgen's `web` target into
# web/pkg/, then binaryen's wasm-opt -O2 (the npm package `binaryen`; set
# WEBPEFT_WASM_OPT=0 to skip it). Prints the wasm size, raw and gzip.
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

if [ "${WEBPEFT_WASM_OPT:-1}" != "0" ]; then
  # wasm-opt takes minutes on this module; its output is kept by input hash, so
  # an unchanged build (the page tests after the browser tests) reuses it.
  # The features are those rustc's wasm32 target emits, plus simd128.
  key=$(sha256sum web/pkg/webpeft_bg.wasm | cut -c1-16)
  cached="$CARGO_TARGET_DIR/wasm-opt/$key.wasm"
  if [ ! -f "$cached" ]; then
    echo "== wasm-opt -O2 (binaryen $(node -p 'require("binaryen/package.json").version'))"
    mkdir -p "$(dirname "$cached")"
    rm -f "$CARGO_TARGET_DIR"/wasm-opt/*.wasm
    node_modules/.bin/wasm-opt -O2 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
      --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
      web/pkg/webpeft_bg.wasm -o "$cached.tmp"
    mv "$cached.tmp" "$cached"
  fi
  cp "$cached" web/pkg/webpeft_bg.wasm
fi
raw=$(stat -c %s web/pkg/webpeft_bg.wasm)
gz=$(gzip -9 -c web/pkg/webpeft_bg.wasm | wc -c)
awk -v r="$raw" -v g="$gz" 'BEGIN { printf "web/pkg/webpeft_bg.wasm: %.1f MB raw, %.1f MB gzip\n", r / 1e6, g / 1e6 }'
