// Shared helpers for the Google Benchmark binaries (one per op family, bench/<family>/).
// Every case reports one row: time (median of the repetitions when run with
// --benchmark_repetitions), and bytes/s or FLOP/s through counters; GPU cases add % of the
// ceilings measured in the same run (bench/gpu_util.h).
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "csrc/philox.h"
#include "csrc/tensor.h"

namespace beaver::bench {

// Random fp32 host tensor in [-1, 1) (never zeros: zeros make some kernels look fast).
inline OwnedTensor random_f32(Shape s, uint64_t seed) {
  OwnedTensor t(DType::F32, s);
  PhiloxStream rng(seed, 0xbe7c);
  float* p = t.ptr<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = 2.0f * rng.uniform() - 1.0f;
  return t;
}

// Minimum bytes moved per iteration → "bytes_per_second" column (GB/s in the table).
inline void set_bytes(benchmark::State& state, double bytes_per_iter) {
  state.SetBytesProcessed(int64_t(bytes_per_iter * double(state.iterations())));
}

// FLOPs per iteration → a "FLOP/s" rate counter.
inline void set_flops(benchmark::State& state, double flops_per_iter) {
  state.counters["FLOP/s"] =
      benchmark::Counter(flops_per_iter, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace beaver::bench
