#!/usr/bin/env bash
# Installs the Debian packages Beaver builds and tests with, if any are missing.
# Idempotent; prints nothing when everything is already present. The CUDA toolkit (nvcc,
# cuBLAS, cuDNN, NCCL) is not a Debian package here: when it is absent the build simply has no
# CUDA backend.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config git python3
  libgtest-dev libgmock-dev libbenchmark-dev
  libsentencepiece-dev sentencepiece
  nlohmann-json3-dev libcli11-dev libopenblas-dev zlib1g-dev
  openmpi-bin libopenmpi-dev
)
# Optional extras, installed on request: clang + libFuzzer for scripts/fuzz.sh.
if [[ "${BEAVER_SETUP_FUZZ:-0}" == 1 ]]; then packages+=(clang libfuzzer-14-dev libclang-rt-14-dev); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
