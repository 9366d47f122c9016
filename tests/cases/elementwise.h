// The elementwise cases (convert, add, axpy, scale, fill), written once and read by the CPU
// test (tests/test_elementwise.cpp), the GPU test (tests/gpu/test_elementwise.cpp) and the CPU
// bench (bench/elementwise/cpu.cpp).
#pragma once

#include <cstdint>

namespace beaver::cases {

// Element counts: one, shorter than a pack, odd counts off every vector width, and counts
// past a 2^16 CPU work chunk and the parallel threshold.
inline constexpr int64_t kElementwiseSizes[] = {1, 7, 13, 1000, 4099, 65536 + 5, 100003};

// Throughput (CPU): T rows of LLaMA-7B's width (4096).
inline constexpr int64_t kElementwiseBenchWidth = 4096;
inline constexpr int64_t kElementwiseBenchRows[] = {256};

}  // namespace beaver::cases
