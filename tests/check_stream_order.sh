#!/usr/bin/env bash
# Stream order check: every copy, fill and free of device memory goes through csrc/device.cpp
# (see csrc/device.h), because the legacy default stream that cudaMemcpy / cudaMemset use is
# not ordered against the contexts' non-blocking streams. Fails, naming file and line, when a
# bare cudaMemcpy(, cudaMemset( or cudaFree( call appears in any other source file.
#   check_stream_order.sh ROOT        scan the tree at ROOT
#   check_stream_order.sh --self-test plant a violation in a scratch tree and check it is caught
set -uo pipefail

scan() {
  local root=$1
  local hits
  hits=$(cd "$root" && grep -rnE '\bcuda(Memcpy|Memset|Memcpy2D|Memcpy3D|Free)[[:space:]]*\(' \
           --include='*.cpp' --include='*.h' --include='*.cu' --include='*.cuh' \
           csrc kernels model train tools tests bench 2>/dev/null |
         grep -v '^csrc/device\.cpp:' |
         grep -vE '^[^:]+:[0-9]+:[[:space:]]*//')
  if [[ -n "$hits" ]]; then
    echo "check_stream_order: device copies, fills and frees must go through csrc/device.cpp" \
         "(device_copy_async / device_fill_async on a stream, or Context::copy / zero):"
    echo "$hits"
    return 1
  fi
  echo "check_stream_order: no bare cudaMemcpy / cudaMemset / cudaFree outside csrc/device.cpp"
  return 0
}

if [[ "${1:-}" == --self-test ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/csrc" "$tmp/kernels"
  printf 'void f() { cudaMemcpy(a, b, n, k); }\n' >"$tmp/csrc/device.cpp"
  printf '// cudaMemset(p, 0, n) in a comment is fine\nvoid g() {}\n' >"$tmp/kernels/ok.cu"
  scan "$tmp" >/dev/null || { echo "self-test: a clean tree was rejected"; exit 1; }
  printf 'void g() {\n  cudaMemset (p, 0, n);\n}\n' >"$tmp/kernels/bad.cu"
  if out=$(scan "$tmp"); then echo "self-test: a planted cudaMemset was not caught"; exit 1; fi
  grep -q 'kernels/bad.cu:2:' <<<"$out" || { echo "self-test: wrong location: $out"; exit 1; }
  echo "check_stream_order self-test: a planted violation is caught with its file and line"
  exit 0
fi

[[ $# -eq 1 && -d "$1" ]] || { echo "usage: $0 ROOT | --self-test" >&2; exit 2; }
scan "$1"
