#!/usr/bin/env bash
# Sets up, builds and runs every test through ctest; exits non-zero on any failure.
# GPU tests (label gpu) skip with a message when no device is usable. Long tests carry the
# label slow and run only with BEAVER_SLOW=1; each has a short variant that always runs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BEAVER_BUILD_DIR:-$root/build}
"$root/scripts/setup.sh"
start=$(date +%s)
"$root/scripts/build.sh"
echo "test: build took $(( $(date +%s) - start )) s"
# Tests run two at a time on small machines: idle OpenMP threads must yield the core.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
args=(--test-dir "$build" --output-on-failure -j "$(nproc)" --timeout 900)
if [[ "${BEAVER_SLOW:-0}" != 1 ]]; then args+=(-LE slow); fi
ctest "${args[@]}"
echo "test: total $(( $(date +%s) - start )) s"
