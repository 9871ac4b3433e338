#!/usr/bin/env bash
# Quality with differential privacy, webpeft's side: LoRA (r 8, alpha 16, query/value) on
# all-MiniLM-L6-v2 and the Rotten Tomatoes snippets (scripts/fetch-data.sh) with DP-SGD at
# epsilon 1, 3 and 8 (delta 1e-5, max grad norm 1.0, Poisson sampling with q = 16 / 2000,
# RDP accountant: --accountant rdp, as the Opacus side), otherwise the hyper-parameters of scripts/quality_webpeft.sh (3 epochs =
# 375 steps, AdamW lr 1e-3, linear schedule with 38 warm-up steps, seed 0). The reference
# side is scripts/quality_dp.py (Opacus + PEFT). Writes docs/quality-dp-webpeft.json.
# Epsilon "inf" is the same run without --dp (quality_webpeft.sh's LoRA run).
# EPOCHS (default 3) sets the budget; the warm-up is round(0.1 x total steps) as in the
# reference (Python's rounding). A measurement, not a test (about 1 min per epoch and epsilon
# on 2 loaded cores).
#   EPOCHS=1 scripts/quality_dp_webpeft.sh [OUT] [EPSILONS]   (EPSILONS default "1 3 8 inf")
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$WEBPEFT_ROOT"
bash scripts/fetch-data.sh >/dev/null
[ -x "$WEBPEFT_BIN" ] || cargo build --release --features cli -p webpeft
out="${1:-docs/quality-dp-webpeft.json}"
epsilons="${2:-1 3 8 inf}"
epochs="${EPOCHS:-3}"
n=$(grep -c . data/rotten_tomatoes/train.jsonl)
warmup=$(python3 -c "import math,sys; print(max(1, round(0.1 * math.ceil($n / 16) * $epochs)))")
delta=1e-5
tmp="$(mktemp -d)"
common=(models/all-MiniLM-L6-v2 --data data/rotten_tomatoes/train.jsonl --task seq-cls
        --method lora --r 8 --alpha 16 --lr 1e-3
        --epochs "$epochs" --batch 16 --seq-len 64 --schedule linear --warmup "$warmup" --seed 0
        --save-every 0)
echo "{" > "$out.tmp"
first=1
for eps in $epsilons; do
  start=$(date +%s)
  if [ "$eps" = inf ]; then dp=(); else
    dp=(--dp --target-epsilon "$eps" --delta "$delta" --max-grad-norm 1.0 --accountant rdp); fi
  "$WEBPEFT_BIN" train "${common[@]}" "${dp[@]}" --out "$tmp/eps$eps" > "$tmp/eps$eps.log"
  secs=$(( $(date +%s) - start ))
  metrics=$("$WEBPEFT_BIN" eval models/all-MiniLM-L6-v2 --adapter "$tmp/eps$eps" --data data/rotten_tomatoes/eval.jsonl --seq-len 64)
  dprec=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])).get("dp")))' "$tmp/eps$eps/webpeft.json")
  echo "epsilon $eps: $(echo "$metrics" | tr -d '\n ') dp $dprec (${secs} s)"
  [ $first -eq 1 ] || echo "," >> "$out.tmp"
  first=0
  printf '"%s": {"lr": 1e-3, "epochs": %s, "batch": 16, "warmup": %s, "train_examples": %s, "train_seconds": %s, "dp": %s, "metrics": %s}\n' \
    "$eps" "$epochs" "$warmup" "$n" "$secs" "$dprec" "$metrics" >> "$out.tmp"
done
echo "}" >> "$out.tmp"
mv "$out.tmp" "$out"
rm -rf "$tmp"
