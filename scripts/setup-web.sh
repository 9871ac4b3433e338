#!/usr/bin/env bash
# What the browser side needs on a fresh Debian machine: Chromium (headless
# WebGPU on SwiftShader where there is no GPU), wasm-bindgen-cli at the exact
# version of the wasm-bindgen crate in Cargo.lock, and the npm build and test
# tools (typescript, esbuild, playwright-core, fflate). Safe to run again: each
# step is skipped when already done. Called by scripts/setup.sh.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

if [ ! -x /usr/bin/chromium ]; then
  echo "setup-web: installing chromium (apt)" >&2
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
fi

want="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)"
if [ -z "$want" ]; then
  echo "setup-web: no wasm-bindgen crate in Cargo.lock" >&2
  exit 1
fi
have="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
if [ "$have" != "$want" ]; then
  echo "setup-web: installing wasm-bindgen-cli $want (once; a few minutes on 2 cores)" >&2
  # Not --locked: the CLI's own lock file pins a webpki-roots release that the
  # crates.io index here does not offer; semver-compatible versions build fine.
  # Without CARGO_TARGET_DIR cargo builds it in a temporary directory, away from the project's.
  # Only the `wasm-bindgen` binary (not the test runner, whose webdriver client wants TLS), at
  # opt-level 1, which LLVM compiles faster (158 s of CPU here); its output on webpeft's module
  # is byte-identical to the default build's, in the same few seconds.
  env -u CARGO_TARGET_DIR CARGO_PROFILE_RELEASE_OPT_LEVEL=1 nice -n 10 \
    cargo install wasm-bindgen-cli --version "$want" --no-default-features --bin wasm-bindgen
fi

# npm dev tools, from the committed package-lock.json.
if ! node -e 'for (const p of ["typescript", "esbuild", "playwright-core", "fflate"]) require.resolve(p + "/package.json")' 2>/dev/null \
   || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup-web: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "setup-web: chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), wasm-bindgen $want, npm tools ready" >&2
