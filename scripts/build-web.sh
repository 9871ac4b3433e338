#!/usr/bin/env bash
# Builds the core for the browser, twice: wasm32 with the `web` bindings (WebGPU via
# wgpu, and burn's Flex CPU backend on one thread) into web/pkg/, and the CPU-only
# threads build (`web-threads`: Flex on a pool of Web Workers, for cross-origin
# isolated pages) into web/pkg-threads/. Each is wasm-bindgen's `web` target, then
# binaryen's wasm-opt -O2 (the npm package `binaryen`). WEBPEFT_WASM_OPT: 1 (default, and
# what `npm pack` ships) optimises both; `main` only the main build, as the test scripts
# choose (the threads build's wasm-opt took 2 of a cold `npm test`'s minutes, and its
# output is tested by `WEBPEFT_WASM_OPT=1 npm run test:web`); 0 neither.
# Prints the wasm sizes, raw, gzip and brotli (scripts/wasm-sizes.mjs).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"

# wasm-bindgen-cli at the exact version of the crate (installed by setup-web.sh).
want="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)"
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
  bash scripts/setup-web.sh
fi

# binaryen's wasm-opt -O2 on a wasm-bindgen output, in place. It takes minutes on
# this module, so its output is kept by input hash: an unchanged build (the page
# tests after the browser tests) reuses it. The features are those rustc's
# wasm32 target emits, plus simd128 (and threads for the threads build).
opt_keys=""
# npm's binaryen, not Debian's (108): that one's -O2 output fails to instantiate
# (WebAssembly.Table.set rejects wasm-bindgen's externref table entries).
wasm_opt=node_modules/.bin/wasm-opt
# optimise [--background] main|threads FILE [wasm-opt flags]. With --background, wasm-opt
# (one thread) runs beside what follows and $opt_pid is set: the main build's runs during
# the threads build's compile, which leaves a core idle for part of its time.
opt_pid=""
optimise() {
  local bg=0
  if [ "$1" = --background ]; then bg=1; shift; fi
  local which="$1" file="$2"; shift 2
  case "${WEBPEFT_WASM_OPT:-1}" in
    0) return 0 ;;
    main) [ "$which" = main ] || { echo "== wasm-opt skipped for $file (WEBPEFT_WASM_OPT=main)"; return 0; } ;;
  esac
  local key cached
  # Keyed by the input and the tool's version (binaryen versions give different outputs).
  key=$({ sha256sum < "$file"; "$wasm_opt" --version; } | sha256sum | cut -c1-16)
  opt_keys="$opt_keys $key"
  cached="$CARGO_TARGET_DIR/wasm-opt/$key.wasm"
  if [ "$bg" = 1 ]; then
    run_wasm_opt "$cached" "$file" "$@" &
    opt_pid=$!
  else
    run_wasm_opt "$cached" "$file" "$@"
  fi
}
run_wasm_opt() {
  local cached="$1" file="$2"; shift 2
  if [ ! -f "$cached" ]; then
    echo "== wasm-opt -O2 $file ($("$wasm_opt" --version))"
    mkdir -p "$(dirname "$cached")"
    "$wasm_opt" -O2 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
      --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue "$@" \
      "$file" -o "$cached.tmp"
    mv "$cached.tmp" "$cached"
  fi
  cp "$cached" "$file"
}

# The main build's cargo profile: `wasm-release` (Cargo.toml: opt-level "s", except the
# CPU backend's kernels, Flex and gemm, at 3), for download size; WEBPEFT_WASM_PROFILE=release
# builds it as before (larger, no other difference).
profile="${WEBPEFT_WASM_PROFILE:-wasm-release}"
echo "== cargo build (wasm32, features web, profile $profile)"
# simd128: Flex's CPU kernels vectorise in the browser. The cdylib crate type
# is asked for here only, so native builds do not link one.
RUSTFLAGS="${RUSTFLAGS:-} --cfg getrandom_backend=\"wasm_js\" -C target-feature=+simd128" \
  cargo rustc --profile "$profile" --target wasm32-unknown-unknown -p webpeft --features web --lib --crate-type cdylib
rm -rf web/pkg
wasm-bindgen --target web --out-dir web/pkg --out-name webpeft "$CARGO_TARGET_DIR/wasm32-unknown-unknown/$profile/webpeft.wasm"
optimise --background main web/pkg/webpeft_bg.wasm

echo "== cargo build (wasm32 with atomics, features web-threads)"
# The CPU backend on a pool of Web Workers (wasm-bindgen-rayon) needs wasm
# atomics and shared memory, so std is rebuilt with them (-Z build-std, from the
# rust-src component; RUSTC_BOOTSTRAP lets the stable toolchain take -Z flags).
# Memory may grow to 4 GiB, as in the main build. Its own target directory keeps
# the two builds from invalidating each other. rust-src comes from rustup; where
# it cannot be had, the package is built without threads and says so (the tests
# that need it are reported as skipped), except under CI=true, where that fails
# unless WEBPEFT_ALLOW_NO_THREADS=1.
rm -rf web/pkg-threads
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
  rustup component add rust-src || true
fi
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
  # CI must not pass on a package that silently lost its threads build.
  case "${CI:-}" in
    true | TRUE | True | 1)
      if [ "${WEBPEFT_ALLOW_NO_THREADS:-}" != "1" ]; then
        echo "ERROR: no rust-src component (rustup component add rust-src failed), so no threads build;" >&2
        echo "ERROR: under CI=true that is a failure. Install rust-src, or set WEBPEFT_ALLOW_NO_THREADS=1 to accept a one-thread CPU backend." >&2
        exit 1
      fi
      ;;
  esac
  echo "WARNING: no rust-src component (rustup component add rust-src failed): the threads build is skipped;"
  echo "WARNING: the CPU backend will run on one thread in the browser."
else
  threads_target="$CARGO_TARGET_DIR/wasm-threads"
  # The linker is told to share the memory (imported, so every worker gets the same
  # one) and to export the thread-local-storage set-up that wasm-bindgen calls.
  # These go to the final link only (after `--`), so they do not rebuild the deps.
  link=()
  for a in --shared-memory --import-memory --max-memory=4294967296 --export=__wasm_init_tls --export=__tls_size --export=__tls_align --export=__tls_base; do
    link+=(-C "link-arg=$a")
  done
  RUSTC_BOOTSTRAP=1 RUSTFLAGS="${RUSTFLAGS:-} --cfg getrandom_backend=\"wasm_js\" -C target-feature=+atomics,+bulk-memory,+simd128" \
    cargo rustc --release --target wasm32-unknown-unknown -p webpeft --features web-threads --lib --crate-type cdylib \
    -Z build-std=panic_abort,std --target-dir "$threads_target" -- "${link[@]}"
  wasm-bindgen --target web --out-dir web/pkg-threads --out-name webpeft "$threads_target/wasm32-unknown-unknown/release/webpeft.wasm"
  optimise threads web/pkg-threads/webpeft_bg.wasm --enable-threads
fi

# The main build's wasm-opt (a failure there fails the build here).
if [ -n "$opt_pid" ]; then
  wait "$opt_pid"
fi

# Keep the cache to the two current outputs (only when both were optimised: otherwise
# there are fewer current keys, and a kept output may still be wanted).
if [ "${WEBPEFT_WASM_OPT:-1}" = "1" ] && [ -n "$opt_keys" ]; then
  for f in "$CARGO_TARGET_DIR"/wasm-opt/*.wasm; do
    [ -e "$f" ] || continue
    case "$opt_keys" in *"$(basename "$f" .wasm)"*) ;; *) rm -f "$f" ;; esac
  done
fi
# Raw, gzip and brotli (quality 5 here: seconds, not minutes; the README's figures are
# quality 11, `node scripts/wasm-sizes.mjs`). The compressed forms go to the static
# server's cache, so the page and the browser tests get them without compressing again.
node scripts/wasm-sizes.mjs --quality 5 --prune
