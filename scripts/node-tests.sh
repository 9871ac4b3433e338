# run_node_tests NAME DIR [FILE.test.mjs... | node --test args...]: runs DIR/*.test.mjs (or the
# given test files) one file at a
# time with node's test runner (each file starts its own Chromium, which uses every
# core) and prints "NAME tests: N passed, M failed[, K skipped]". Returns non-zero
# when a test failed, when no test ran or none passed, or when a file registers no
# test. Sourced by scripts/test-web.sh and scripts/test-www.sh.
run_node_tests() {
  local name="$1" dir="$2"; shift 2
  # An explicit file list: node >= 21 takes a directory argument as a file and fails.
  local files opts=() arg
  # Test files among the arguments run alone (e.g. scripts/test-web.sh tests/web/train.test.mjs);
  # other arguments are node --test options.
  files=()
  for arg in "$@"; do
    case "$arg" in
      *.test.mjs) files+=("$arg") ;;
      *) opts+=("$arg") ;;
    esac
  done
  if [ "${#files[@]}" -eq 0 ]; then
    shopt -s nullglob
    files=("$dir"/*.test.mjs)
    shopt -u nullglob
  fi
  if [ "${#files[@]}" -eq 0 ]; then
    echo "$name tests: no test files ($dir/*.test.mjs)" >&2
    return 1
  fi
  local log status ran p f k empty
  log="$(mktemp)"
  echo "== $name tests (node --test $dir/*.test.mjs: ${#files[@]} files)"
  set +e
  node --test --test-concurrency=1 --test-reporter=spec "${opts[@]}" "${files[@]}" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  set -e
  # A file that registers no test is itself reported as one passing test
  # ("✔ <path>.test.mjs (..ms)"): it is counted apart, not as a pass.
  read -r ran p f k empty < <(awk '/^ℹ tests / { t = $3 } /^ℹ pass / { p = $3 } /^ℹ fail / { f = $3 } /^ℹ skipped / { k = $3 }
    /^✔ .*\.test\.mjs \([0-9.]+ms\)$/ { e++ }
    END { print t - e, p - e, f + 0, k + 0, e + 0 }' "$log")
  echo "$name tests: $p passed, $f failed$([ "$k" -gt 0 ] && echo ", $k skipped")$([ "$empty" -gt 0 ] && echo ", $empty files without tests")"
  rm -f "$log"
  # Zero tests run (a bad pattern, no summary because node crashed) or a test
  # file without tests is a failure, not a pass.
  if [ "$status" -eq 0 ] && { [ "$ran" -le 0 ] || [ "$p" -le 0 ] || [ "$empty" -gt 0 ]; }; then
    echo "$name tests: $p of $ran tests passed, $empty files without tests; failing" >&2
    status=1
  fi
  return "$status"
}
