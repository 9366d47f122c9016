#!/usr/bin/env bash
# One device session for the attention and sampling kernels: builds their targets, runs their
# GPU tests, their GPU benchmarks and the PyTorch baselines on the same card, and keeps the
# logs under ${OUT:-build/gpu_attention}. The benchmark tables print last.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BEAVER_BUILD_DIR:-$root/build}
out=${OUT:-$build/gpu_attention}
mkdir -p "$out"
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" -j "$(nproc)" --target gpu_test_attention gpu_test_sampling \
  bench_attention bench_sampling
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv | tee "$out/card.txt"
git -C "$root" rev-parse HEAD | tee "$out/commit.txt"
status=0
"$build/gpu_test_attention" 2>&1 | tee "$out/test_attention.log" | tail -n 3 || status=1
"$build/gpu_test_sampling" 2>&1 | tee "$out/test_sampling.log" | tail -n 3 || status=1
"$build/bench_attention" --benchmark_filter=Cuda --benchmark_counters_tabular=true \
  >"$out/bench_attention.txt" 2>&1 || status=1
"$build/bench_sampling" --benchmark_filter=Cuda --benchmark_counters_tabular=true \
  >"$out/bench_sampling.txt" 2>&1 || status=1
python3 "$root/bench/torch_attention_baseline.py" >"$out/torch_baseline.txt" 2>&1 || status=1
cat "$out/bench_attention.txt" "$out/bench_sampling.txt" "$out/torch_baseline.txt"
exit $status
