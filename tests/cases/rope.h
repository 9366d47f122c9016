// The rotary-embedding cases, written once and read by the CPU test (tests/test_rope.cpp), the
// GPU test (tests/gpu/test_rope.cpp) and the CPU bench (bench/rope/cpu.cpp).
#pragma once

#include <cstdint>

namespace beaver::cases {

// T tokens of `heads` heads of size d (even), rotated in place.
struct RopeShape {
  int64_t T, heads, d;
  int64_t numel() const { return T * heads * d; }
};

// Correctness: the smallest head, a head size whose half (3) is off every vector width, odd
// head counts, LLaMA's 64 and 128, and LLaMA-7B's 32 heads.
inline constexpr RopeShape kRope[] = {{1, 1, 2},    {5, 3, 6},   {5, 3, 8},    {3, 1, 64},
                                      {17, 4, 64},  {37, 5, 128}, {40, 7, 128}, {9, 32, 128}};

// Throughput (CPU, q and k together): LLaMA-7B (32 query and 32 key heads of 128) and a
// grouped-query layout (8 key heads).
struct RopeBenchShape {
  int64_t T, nh, nkv, d;
};
inline constexpr RopeBenchShape kRopeBench[] = {{256, 32, 32, 128}, {512, 32, 8, 128}};

}  // namespace beaver::cases
