#!/usr/bin/env bash
# The stage logic of scripts/gpu-check.sh with its device parts stubbed
# (BEAVER_GPU_CHECK_STUB=1), so that it is checked on a machine without a GPU:
#   1. all stages pass -> exit 0, every stage listed ok, every stage's result written;
#   2. a stage that runs past its budget is cut (CUT), the later stages still run, the earlier
#      stages' results stay written, exit 1, and the run takes about the budget, not the sleep;
#   3. a failing stage is reported FAILED with its exit code, exit 1;
#   4. when the total budget is spent, the remaining stages are SKIPPED, exit 1;
#   5. with $OUT set, the results are packed there even when a stage was cut.
set -uo pipefail
# Pipelines end in `grep -c ... >/dev/null`, not `grep -q`: -q may stop reading at the first
# match, and under pipefail the writer's SIGPIPE would then fail a check that matched.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "gpu_check_stages: $*"; exit 1; }
stages=(configure build tests nccl sanitizer benches baselines table)

run() {  # run NAME [VAR=VALUE...]: gpu-check in stub mode into $tmp/NAME
  local name=$1; shift
  env BEAVER_GPU_CHECK_STUB=1 BEAVER_GPU_CHECK_OUT="$tmp/$name" OUT= "$@" \
    bash "$root/scripts/gpu-check.sh" >"$tmp/$name.stdout" 2>&1
}
line() { grep -E "^$2 " "$tmp/$1/stages.txt"; }

# 1. everything passes
run pass; rc=$?
(( rc == 0 )) || fail "all stubs pass, exit status $rc (want 0): $(cat "$tmp/pass.stdout")"
for s in "${stages[@]}"; do
  line pass "$s" | grep -c ' ok ' >/dev/null || fail "stage $s not ok: $(cat "$tmp/pass/stages.txt")"
  [[ -f "$tmp/pass/$s.txt" ]] || fail "stage $s wrote no result"
done

# 2. the benches run past their budget
s0=$(date +%s)
run cut BEAVER_STUB_SLEEP_BENCHES=30 BEAVER_BUDGET_BENCHES=2; rc=$?
secs=$(( $(date +%s) - s0 ))
(( rc == 1 )) || fail "a cut stage gives exit status $rc (want 1)"
line cut benches | grep -c ' CUT ' >/dev/null || fail "benches not reported CUT: $(cat "$tmp/cut/stages.txt")"
for s in configure build tests nccl sanitizer; do
  line cut "$s" | grep -c ' ok ' >/dev/null || fail "stage $s before the cut one not ok"
  [[ -f "$tmp/cut/$s.txt" ]] || fail "the result of finished stage $s is missing after a cut"
done
line cut baselines | grep -c ' ok ' >/dev/null || fail "the stage after the cut one did not run"
(( secs < 20 )) || fail "the cut stage was not stopped at its budget (run took $secs s)"

# 3. a failing stage
run failing BEAVER_STUB_RC_TESTS=3; rc=$?
(( rc == 1 )) || fail "a failing stage gives exit status $rc (want 1)"
line failing tests | grep -c 'FAILED(rc=3)' >/dev/null || fail "tests not reported FAILED(rc=3)"
line failing benches | grep -c ' ok ' >/dev/null || fail "the stages after a failing one did not run"

# 4. the total budget runs out: the stages after it are skipped
run total BEAVER_BUDGET_TOTAL=4 BEAVER_STUB_SLEEP_TESTS=30; rc=$?
(( rc == 1 )) || fail "a spent total gives exit status $rc (want 1)"
line total tests | grep -c ' CUT ' >/dev/null || fail "tests not cut at the total budget"
line total table | grep -c 'SKIPPED' >/dev/null || fail "table not SKIPPED when no time is left"

# 5. packed into $OUT despite the cut
mkdir -p "$tmp/device-out"
env BEAVER_GPU_CHECK_STUB=1 BEAVER_GPU_CHECK_OUT="$tmp/packed" OUT="$tmp/device-out" \
  BEAVER_STUB_SLEEP_BASELINES=30 BEAVER_BUDGET_BASELINES=1 \
  bash "$root/scripts/gpu-check.sh" >/dev/null 2>&1
[[ -f "$tmp/device-out/gpu-check.tar.gz" ]] || fail "nothing packed into \$OUT"
tar -tzf "$tmp/device-out/gpu-check.tar.gz" | grep -c 'tests.txt' >/dev/null ||
  fail "the packed results lack a finished stage's result"
grep -q 'baselines *CUT' "$tmp/device-out/stages.txt" || fail "\$OUT/stages.txt lacks the cut"
echo "gpu_check_stages: pass, cut, fail, skip and pack behave"
