#!/usr/bin/env bash
# The native chat demo on the bundled default model: a chat generation with
# SmolLM2-135M-Instruct, natively (the CLI), streamed to the terminal.
# `npm run demo:cli`; `npm start` serves the web page instead.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"
bash scripts/setup.sh
cargo build --release --features cli -p webpeft
prompt="${WEBPEFT_PROMPT:-Write a haiku about fine-tuning a language model in a web browser.}"
echo "> $prompt"
"$WEBPEFT_BIN" generate models/SmolLM2-135M-Instruct.Q4_1.gguf --chat --prompt "$prompt" --max-new-tokens "${WEBPEFT_MAX_NEW_TOKENS:-96}" "$@"
