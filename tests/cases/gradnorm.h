// The gradient-norm cases, written once and read by the CPU test (tests/test_gradnorm.cpp), the
// GPU test (tests/gpu/test_gradnorm.cpp) and the CPU bench (bench/gradnorm/cpu.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "csrc/philox.h"
#include "csrc/tensor.h"

namespace beaver::cases {

// One list of odd shapes: empty, one element, less than a chunk, several chunks plus a tail,
// and leading dims (the ops flatten every tensor).
inline const std::vector<Shape> kGradnormShapes = {Shape{1},     Shape{0},          Shape{7, 13},
                                                   Shape{50021}, Shape{3, 11, 997}, Shape{16385}};

// Lists of many tensors: none, one, a few, and 130 (three launches of the GPU's multi-tensor
// kernel). gradnorm_sizes draws each list's tensor sizes: every fifth up to 70000 elements,
// the rest up to 3000.
inline constexpr int kGradnormTensorCounts[] = {0, 1, 5, 130};
inline std::vector<int64_t> gradnorm_sizes(int count, uint64_t seed) {
  PhiloxStream rng(seed, 9);
  std::vector<int64_t> n;
  for (int i = 0; i < count; ++i) n.push_back(1 + rng.next_u32() % (i % 5 == 0 ? 70000u : 3000u));
  return n;
}

// Throughput (CPU): 16M gradients in 64 tensors of odd size, 2^18 + 3i elements for tensor i.
inline constexpr int kGradnormBenchTensors = 64;
inline int64_t gradnorm_bench_size(int i) { return (int64_t(1) << 18) + 3 * i; }

}  // namespace beaver::cases
