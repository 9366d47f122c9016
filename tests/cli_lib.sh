# Shared by the tests/cli_*.sh checks of the beaver binary; sourced, never run. After
# `set -uo pipefail` and `source "$(dirname "$0")/cli_lib.sh"`:
#   cli_init NAME BUILD_DIR   $beaver is BUILD_DIR/beaver, $out a fresh /tmp/beaver-NAME.XXXXXX
#                             folder removed on exit, no failures yet (no BUILD_DIR: usage, exit 2)
#   fail MESSAGE...           prints FAIL: MESSAGE and counts it
#   expect CODE PATTERN ARGS...
#                             beaver ARGS exits CODE and its stderr+stdout matches the extended
#                             regex PATTERN; the output stays in $text (and is appended to
#                             $all_output when that is set); a failure shows its last $cli_tail
#                             lines (default 5)
#   refute PATTERN            the last expect's output does not match PATTERN
#   cli_finish MESSAGE        exit 1 with the count when any check failed, else print MESSAGE
cli_init() {
  local name=$1 build=${2:-}
  [[ -n "$build" ]] || { echo "usage: $(basename "$0") BUILD_DIR" >&2; exit 2; }
  beaver=$build/beaver
  out=$(mktemp -d "/tmp/beaver-$name.XXXXXX")
  trap 'rm -rf "$out"' EXIT
  failures=0
  text=
}

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

expect() {
  local code=$1 pattern=$2; shift 2
  local got shown
  text=$("$beaver" "$@" 2>&1); got=$?
  [[ -n "${all_output:-}" ]] && printf '%s\n' "$text" >>"$all_output"
  shown=$(tail -"${cli_tail:-5}" <<<"$text")
  [[ $got == "$code" ]] || fail "beaver $* exited $got, expected $code: $shown"
  grep -qE -- "$pattern" <<<"$text" || fail "beaver $* printed no /$pattern/: $shown"
}

refute() {
  ! grep -qE -- "$1" <<<"$text" || fail "printed /$1/: $(grep -E -- "$1" <<<"$text" | head -2)"
}

cli_finish() {
  if ((failures > 0)); then
    echo "$failures check(s) failed"
    exit 1
  fi
  echo "$1"
}
