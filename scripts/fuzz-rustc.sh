#!/usr/bin/env bash
# RUSTC_WRAPPER for scripts/fuzz.sh: adds libFuzzer's coverage instrumentation
# (the flags cargo-fuzz passes), overflow checks and debug assertions to the
# crates whose parsing is fuzzed, and compiles everything else (burn, ...) as a
# plain release build, which is faster to build and keeps the coverage map on
# the parsers.
rustc="$1"; shift
name=""
prev=""
for a in "$@"; do
  if [ "$prev" = "--crate-name" ]; then name="$a"; break; fi
  prev="$a"
done
case "$name" in
  webpeft|webpeft_fuzz|safetensors|tokenizers|serde_json|minijinja|fancy_regex|half|safetensors_*|build_script_build_never)
    exec "$rustc" "$@" -Cpasses=sancov-module \
      -Cllvm-args=-sanitizer-coverage-level=4 \
      -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
      -Cllvm-args=-sanitizer-coverage-pc-table \
      -Cllvm-args=-sanitizer-coverage-trace-compares \
      -Cdebug-assertions -Coverflow-checks=on --cfg fuzzing ;;
  *) exec "$rustc" "$@" ;;
esac
