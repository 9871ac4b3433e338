#!/usr/bin/env bash
# Opt-in tests on a real 494M-parameter model: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, 491 MB,
# fetched once into ~/.cache/webpeft/models) against transformers' references
# (crate/tests/real_big.rs; references from tests/fixtures/real/make_qwen_ref.py).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/fetch-models.sh --big
cargo test --release --features cli -p webpeft --test real_big -- --ignored --test-threads=1
