#!/usr/bin/env bash
# `npm run bench`: speed measurements (never tests). With torch, transformers and
# peft installed (PYTHON, default python3), each table puts webpeft next to
# PyTorch on the same workloads; without them, webpeft's own figures only.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"
bash scripts/setup.sh
cargo build --release --features cli -p webpeft
py="${PYTHON:-python3}"
if "$py" -c 'import torch, transformers, peft' 2>/dev/null; then
  "$py" scripts/bench_forward.py --devices cpu
  "$py" scripts/bench_train.py --devices cpu
else
  echo "(torch/transformers/peft not found for $py: webpeft figures only)"
  "$WEBPEFT_BIN" bench forward --devices cpu
  "$WEBPEFT_BIN" bench train --devices cpu
fi
