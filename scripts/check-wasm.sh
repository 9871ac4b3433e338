#!/usr/bin/env bash
# The core must build for the browser: the wasm32 build with the JS bindings
# (scripts/build-web.sh; one build, shared with the browser tests).
set -euo pipefail
bash "$(dirname "$0")/build-web.sh"
echo "wasm32 build of the core: ok"
