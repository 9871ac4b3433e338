#!/usr/bin/env bash
# Coverage-guided fuzzing of webpeft's parsers (issue #12), with libFuzzer.
#
#   npm run fuzz -- [SECONDS] [TARGET...]      # default: 60 s for each target
#   bash scripts/fuzz.sh 300 gguf data
#
# Targets (fuzz/fuzz_targets/): safetensors gguf tokenizer adapter data model; and `zip`,
# a plain (not coverage-guided) mutation check of the browser's adapter zip import in
# JavaScript (scripts/fuzz-zip.mjs, fflate).
# Each runs for SECONDS of wall-clock time (libFuzzer's -max_total_time; the table also
# gives the CPU seconds it got, less on a busy machine) from its committed seeds (fuzz/seeds/TARGET) plus what earlier
# runs found (fuzz/corpus/TARGET, not committed); a crashing input is written to
# fuzz/artifacts/TARGET/ and the script exits 1 after the other targets ran.
# Reproduce one: $BIN/TARGET fuzz/artifacts/TARGET/crash-...  (FUZZ_DEBUG=1 prints each step).
#
# No cargo-fuzz needed: the stable toolchain builds the targets with the flags cargo-fuzz
# passes (scripts/fuzz-rustc.sh adds them to the parsing crates only, so burn builds as a
# plain release build). Builds go to $CARGO_TARGET_DIR (default ~/.cache/webpeft/fuzz-target,
# apart from the test builds, whose flags differ).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_EACH=${1:-60}
shift || true
ALL=(safetensors gguf tokenizer adapter data model zip)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/webpeft/fuzz-target}
export RUSTC_WRAPPER=$ROOT/scripts/fuzz-rustc.sh
# libfuzzer-sys compiles libFuzzer (C++) once.
command -v c++ >/dev/null || { echo "fuzz: needs a C++ compiler (apt-get install g++)" >&2; exit 1; }

RUST=()
for t in "${TARGETS[@]}"; do [ "$t" = zip ] || RUST+=("$t"); done
if [ ${#RUST[@]} -gt 0 ]; then
  echo "fuzz: building ${RUST[*]} (first build: burn and the crate, several minutes)"
  (cd fuzz && cargo build --release $(printf -- '--bin %s ' "${RUST[@]}"))
fi
if [[ " ${TARGETS[*]} " == *" zip "* ]] && [ ! -d node_modules/fflate ]; then
  npm ci --ignore-scripts
fi
BIN=$CARGO_TARGET_DIR/release

# CPU=seconds (user + system) of this shell's finished children, from the `times` builtin,
# run in this shell (in a command substitution it would time a fresh subshell).
cpu_seconds() {
  times >"$tmp"
  CPU=$(tail -1 "$tmp" | awk '{ split($1, u, "m"); split($2, s, "m"); printf "%.0f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }')
}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

status=0
printf '\n%-12s %8s %8s %12s %8s %s\n' target wall_s cpu_s executions corpus result
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t/last-run.log"
  start=$(date +%s)
  cpu_seconds; cpu0=$CPU
  set +e
  if [ "$t" = zip ]; then
    node scripts/fuzz-zip.mjs "$SECONDS_EACH" >"$log" 2>&1
    rc=$?
    set -e
    cpu_seconds; cpu=$(( CPU - cpu0 ))
    execs=$(grep -o '"runs":[0-9]*' "$log" | grep -o '[0-9]*' || true)
    result=$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc), see $log")
    [ $rc -eq 0 ] || status=1
    printf '%-12s %8s %8s %12s %8s %s\n' "$t" "$(( $(date +%s) - start ))" "$cpu" "${execs:-?}" - "$result"
    continue
  fi
  # -rss_limit_mb / -malloc_limit_mb: an input that makes the parser allocate more than
  # 2 GB (a huge declared length) is a crash; -timeout: one input taking over 10 s is a hang.
  "$BIN/$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -max_total_time="$SECONDS_EACH" -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  secs=$(( $(date +%s) - start ))  # until the crash, if one stopped it
  cpu_seconds; cpu=$(( CPU - cpu0 ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  corpus=$(ls "fuzz/corpus/$t" | wc -l)
  if [ $rc -eq 0 ]; then
    result=ok
  else
    status=1
    result="CRASH (exit $rc): $(ls -t "fuzz/artifacts/$t" | grep -v last-run.log | head -1 || true), see $log"
  fi
  printf '%-12s %8s %8s %12s %8s %s\n' "$t" "$secs" "$cpu" "${execs:-?}" "$corpus" "$result"
  if [ $rc -ne 0 ]; then
    grep -m1 -A12 "panicked at\|ERROR: libFuzzer\|==ERROR" "$log" | sed 's/^/    /' || true
  fi
done
exit $status
