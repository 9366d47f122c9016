// The SwiGLU cases, written once and read by the CPU test (tests/test_swiglu.cpp), the GPU test
// (tests/gpu/test_swiglu.cpp) and the CPU bench (bench/swiglu/cpu.cpp). A new shape goes here.
#pragma once

#include <cstdint>

namespace beaver::cases {

struct SwigluShape {
  int64_t T, I;
  int64_t numel() const { return T * I; }
};

// Correctness: one element, odd sizes off every vector width, a partial last block, and
// LLaMA-like widths.
inline constexpr SwigluShape kSwiglu[] = {{1, 1},     {3, 7},     {3, 17},    {5, 13},
                                          {5, 256},   {9, 300},   {17, 1001}, {33, 1000},
                                          {40, 1000}, {64, 2752}};
// The CPU backward is checked against finite differences in double, whose cost grows with the
// square of the size: only cases up to this many elements.
inline constexpr int64_t kSwigluFiniteDiffMax = 3000;

// Throughput: LLaMA-7B's intermediate width at a decode-sized and a prefill-sized batch.
inline constexpr SwigluShape kSwigluBench[] = {{64, 11008}, {256, 4096}};

}  // namespace beaver::cases
