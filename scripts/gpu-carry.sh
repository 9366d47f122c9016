#!/usr/bin/env bash
# Run HERE (not on the device): fetches the Debian packages that the GPU tests and benches need
# to build on the device machine, which has CUDA, cmake, ninja, g++ and PyTorch but none of
# these libraries. The .deb files land in .device-carry/ (git-ignored); pass that folder to the
# device run as a carried path, and scripts/gpu-check.sh unpacks them with `dpkg -x` into
# /tmp/deps there (never into /). Idempotent: packages already downloaded are kept.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=$root/.device-carry
packages=(
  libgtest-dev                                   # GoogleTest (static libraries + CMake config)
  libbenchmark-dev libbenchmark1debian           # Google Benchmark (shared library)
  libopenblas-pthread-dev libopenblas0-pthread   # OpenBLAS (cblas.h, libopenblas.so)
  libgfortran5 libquadmath0                      # OpenBLAS's runtime dependencies
  libsentencepiece-dev libsentencepiece0         # sentencepiece
  nlohmann-json3-dev libcli11-dev                # header-only
  pkgconf-bin libpkgconf3                        # pkg-config (finds sentencepiece)
)
mkdir -p "$dest"
cd "$dest"
missing=()
for p in "${packages[@]}"; do
  compgen -G "${p}_*.deb" >/dev/null || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  if ! apt-get download "${missing[@]}" 2>/dev/null; then
    apt-get update -qq
    apt-get download "${missing[@]}"
  fi
fi
# The header-only cuDNN frontend (PyPI wheel nvidia-cudnn-frontend, its include/ folder only):
# the fused-SDPA oracle of the attention GPU tests and bench_attention (tests/gpu/cudnn_sdpa.h).
if [[ ! -f "$dest/cudnn-frontend/include/cudnn_frontend.h" ]]; then
  tmp=$(mktemp -d)
  if python3 -m pip download nvidia-cudnn-frontend --no-deps -q -d "$tmp" 2>/dev/null ||
     /work/venv-torch/bin/pip download nvidia-cudnn-frontend --no-deps -q -d "$tmp" 2>/dev/null; then
    rm -rf "$dest/cudnn-frontend" && mkdir -p "$dest/cudnn-frontend"
    (cd "$dest/cudnn-frontend" && python3 -m zipfile -e "$tmp"/nvidia_cudnn_frontend-*.whl x &&
       mv x/include . && rm -rf x)
  else
    echo "gpu-carry: nvidia-cudnn-frontend not fetched: the cuDNN oracle stays out of the build"
  fi
  rm -rf "$tmp"
fi
echo "gpu-carry: $(ls "$dest"/*.deb | wc -l) packages, $(du -sh "$dest" | cut -f1) in $dest"
