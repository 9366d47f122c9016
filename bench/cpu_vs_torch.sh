#!/usr/bin/env bash
# Beaver against PyTorch on the CPU, side by side in one run (see bench/cpu_vs_torch.py for what
# is timed and how). PyTorch and transformers come from a virtual environment:
#   bench/cpu_vs_torch.sh --venv DIR [--install] [--build DIR] [-- cpu_vs_torch.py options]
# (options: --reps N --iters N --threads 1,2 --wait-policy passive|active --json FILE).
# The venv is --venv DIR, else $BEAVER_TORCH_VENV. With --install a missing venv is created
# and torch + transformers are installed into it from PyPI (pip); without it a venv lacking
# them is reported with the command that would install them. Builds bench_model if needed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${BEAVER_TORCH_VENV:-}"
build="$root/build"
install=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --venv) venv="${2:?--venv needs a directory}"; shift 2 ;;
    --install) install=1; shift ;;
    --build) build="${2:?--build needs a directory}"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "cpu_vs_torch.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z "$venv" ]]; then
  echo "cpu_vs_torch.sh: no virtual environment: pass --venv DIR or set BEAVER_TORCH_VENV" \
       "(add --install to create it with torch + transformers from PyPI)" >&2
  exit 2
fi
py="$venv/bin/python"
if ! { [[ -x "$py" ]] && "$py" -c 'import torch, transformers' 2>/dev/null; }; then
  if [[ $install -eq 0 ]]; then
    echo "cpu_vs_torch.sh: $venv has no python with torch and transformers; create it with" >&2
    echo "  $0 --venv $venv --install" >&2
    echo "(python3 -m venv $venv && $venv/bin/pip install torch transformers)" >&2
    exit 2
  fi
  echo "cpu_vs_torch.sh: installing torch and transformers from PyPI into $venv" >&2
  [[ -x "$py" ]] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch transformers
fi
if [[ ! -x "$build/bench_model" ]]; then
  [[ -f "$build/build.ninja" || -f "$build/Makefile" ]] ||
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" --target bench_model -j"$(nproc)"
fi
exec "$py" "$root/bench/cpu_vs_torch.py" --bench-model "$build/bench_model" "$@"
