// The AdamW cases, written once and read by the CPU test (tests/test_adamw.cpp), the GPU test
// (tests/gpu/test_adamw.cpp) and the CPU bench (bench/adamw/cpu.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "csrc/ops/adamw.h"

namespace beaver::cases {

// Parameter counts: one, shorter than a pack, odd sizes off every vector width, and one larger
// than a CPU work chunk (2^16).
inline constexpr int64_t kAdamwSizes[] = {1, 7, 1000, 4099, 100003};

// The weight-decay segments for n parameters: unsorted, disjoint, some starting inside a
// 4-wide pack, one ending at the last element.
inline std::vector<ops::ParamSegment> adamw_segments(int64_t n) {
  if (n < 8) return {{0, n / 2}};
  return {{n / 2 + 3, n / 4}, {1, n / 8}, {n / 8 + 5, n / 16}, {n - 2, 2}};
}

// Throughput (CPU): one step over 16M parameters.
inline constexpr int64_t kAdamwBenchParams = int64_t(16) << 20;

}  // namespace beaver::cases
