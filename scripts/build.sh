#!/usr/bin/env bash
# Configures (once) and builds Beaver into ${BEAVER_BUILD_DIR:-build}. Extra arguments go to
# cmake at configure time, e.g. scripts/build.sh -DBEAVER_CUDA=OFF.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BEAVER_BUILD_DIR:-$root/build}
if [[ ! -f "$build/build.ninja" || $# -gt 0 ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
fi
cmake --build "$build" -j "$(nproc)"
