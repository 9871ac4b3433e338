#!/usr/bin/env bash
# Opt-in (`npm run test:flow`; not part of `npm test`: it needs torch and takes minutes): issue
# #13's whole flow on the page as a person goes through it (tests/flow/flow.test.mjs: typed
# classes and conversations, the suggested settings, a multi-turn chat, a reload, every download),
# then the downloads read by their targets' own readers (tests/flow_check.py: transformers + PEFT,
# the gguf package and llama.cpp itself, the GPU job's train.py with transformers' Trainer).
# Python packages go to a virtual environment, $WEBPEFT_FLOW_VENV (default ~/.venvs/flow),
# created with pinned versions the first time (torch from PyPI: a few GB).
set -euo pipefail
export WEBPEFT_PROFILE="${WEBPEFT_PROFILE:-ci}"
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"
venv="${WEBPEFT_FLOW_VENV:-$HOME/.venvs/flow}"
if ! "$venv/bin/python" -c "import torch, transformers, peft, accelerate, gguf" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch==2.15.0 transformers==5.24.0 peft==0.21.2 accelerate==1.15.0 gguf==0.19.0 safetensors numpy
fi
# llama.cpp itself, for the GGUF LoRA: the llama-cpp-cffi wheel's CPU build (PyPI's llama-cpp-python
# is source only). --no-deps: its Python layer pins transformers 4.50, which the check does not use.
if ! "$venv/bin/python" -c "import cffi, importlib.util as u; assert u.find_spec('llama')" 2>/dev/null; then
  "$venv/bin/pip" install --quiet cffi
  "$venv/bin/pip" install --quiet --no-deps llama-cpp-cffi==0.4.42
fi
# The wheel was linked against GCC 14's libstdc++; Debian 12's lacks __cxa_call_terminate (called
# only when an exception leaves a noexcept function), so a two-line shim supplies it.
shim="$venv/lib/libcxa_call_terminate.so"
if [ ! -f "$shim" ]; then
  printf '%s\n' '#include <exception>' 'extern "C" void* __cxa_begin_catch(void*) noexcept;' \
    'extern "C" [[noreturn]] void __cxa_call_terminate(void* e) noexcept { if (e) __cxa_begin_catch(e); std::terminate(); }' \
    | g++ -x c++ -shared -fPIC -O1 -o "$shim" -
fi
export WEBPEFT_LLAMA_CPP_PRELOAD="$shim"
# The page and the package (as npm start builds them) and the bundled models.
bash scripts/setup-web.sh
if [ ! -f web/dist/index.js ] || [ ! -f web/dist/webpeft_bg.wasm ]; then
  bash scripts/build-web.sh
  node web/build.mjs
fi
node www/build.mjs
rm -rf tests/out/flow
source scripts/node-tests.sh
run_node_tests flow tests/flow
"$venv/bin/python" tests/flow_check.py tests/out/flow/manifest.json
