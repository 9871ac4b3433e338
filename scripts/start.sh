#!/usr/bin/env bash
# `npm start`: everything the web page needs on a fresh machine, then serves it.
#   1. scripts/setup.sh      toolchain, Chromium, npm packages, the bundled models
#      (and scripts/fetch-models.sh --chat: Qwen2.5-Coder-0.5B-Instruct)
#   2. scripts/build-web.sh  the wasm core (web/pkg/)
#   3. web/build.mjs         the npm package (web/dist/)
#   4. www/build.mjs         the page's script and chart library (www/dist/)
#   5. scripts/serve.mjs     a static server on 127.0.0.1:$PORT (default 8080)
# The native chat demo that used to live here is `npm run demo:cli`.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"
bash scripts/setup.sh
# The page's third bundled model, Qwen2.5-Coder-0.5B-Instruct (491 MB, once; not needed by the tests).
bash scripts/fetch-models.sh --chat
bash scripts/build-web.sh
node web/build.mjs
node www/build.mjs
exec node scripts/serve.mjs
