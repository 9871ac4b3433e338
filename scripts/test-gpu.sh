#!/usr/bin/env bash
# The native tests with the wgpu backend as well as the CPU (Vulkan here through lavapipe,
# Metal/DX12 elsewhere): every parity test then runs on both backends, as do the cubecl
# block-decoding kernel's, PEFT's adapters' and the DP per-example gradients' tests.
# `npm test` builds the CLI without wgpu (feature `cli-cpu`), so a cold run compiles burn's
# wgpu stack once, for the browser, whose tests check WebGPU against transformers' numbers;
# this command compiles it natively too (README, "Build times").
set -euo pipefail
cd "$(dirname "$0")/.."
# Tests build the native side with the `ci` profile (scripts/env.sh).
export WEBPEFT_PROFILE="${WEBPEFT_PROFILE:-ci}"
source scripts/env.sh
bash scripts/setup.sh
# Two test threads: lavapipe uses every core anyway.
cargo test --profile "$WEBPEFT_PROFILE" --features cli -p webpeft "$@" -- --test-threads=2
