#!/usr/bin/env bash
# Quality on a real model: fine-tunes all-MiniLM-L6-v2 on the Rotten Tomatoes
# snippets (scripts/fetch-data.sh) with LoRA, BitFit, (IA)^3 and prompt tuning,
# with the hyper-parameters of scripts/quality_peft.py (HF PEFT), and writes
# docs/quality-webpeft.json. A measurement, not a test (about 15 min on 2 cores).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"
bash scripts/fetch-data.sh >/dev/null
cargo build --release --features cli -p webpeft
out="${1:-docs/quality-webpeft.json}"
tmp="$(mktemp -d)"
common=(models/all-MiniLM-L6-v2 --data data/rotten_tomatoes/train.jsonl --task seq-cls
        --epochs 3 --batch 16 --seq-len 64 --schedule linear --warmup 38 --seed 0 --save-every 0)
declare -A lr=([lora]=1e-3 [bitfit]=1e-3 [ia3]=5e-3 [prompt]=1e-1)
declare -A extra=([lora]="--r 8 --alpha 16" [bitfit]="" [ia3]="" [prompt]="--virtual-tokens 8")
echo "{" > "$out.tmp"
first=1
for m in lora bitfit ia3 prompt; do
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$WEBPEFT_BIN" train "${common[@]}" --method "$m" --lr "${lr[$m]}" ${extra[$m]} --out "$tmp/$m" > "$tmp/$m.log"
  secs=$(( $(date +%s) - start ))
  metrics=$("$WEBPEFT_BIN" eval models/all-MiniLM-L6-v2 --adapter "$tmp/$m" --data data/rotten_tomatoes/eval.jsonl --seq-len 64)
  echo "$m: $(echo "$metrics" | tr -d '\n ') (${secs} s)"
  [ $first -eq 1 ] || echo "," >> "$out.tmp"
  first=0
  printf '"%s": {"lr": %s, "train_seconds": %s, "metrics": %s}\n' "$m" "${lr[$m]}" "$secs" "$metrics" >> "$out.tmp"
done
echo "}" >> "$out.tmp"
mv "$out.tmp" "$out"
rm -rf "$tmp"
