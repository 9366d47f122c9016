// The RMSNorm cases, written once and read by the CPU test (tests/test_rmsnorm.cpp), the GPU
// test (tests/gpu/test_rmsnorm.cpp) and the CPU bench (bench/rmsnorm/cpu.cpp).
#pragma once

#include <cstdint>

#include "csrc/tensor.h"

namespace beaver::cases {

// `B` leading batch rows of `T` tokens each, hidden size H; the op sees rows() rows.
struct RmsnormShape {
  int64_t B, T, H;
  int64_t rows() const { return B * T; }
  int64_t numel() const { return rows() * H; }
  Shape shape() const { return B > 1 ? Shape{B, T, H} : Shape{T, H}; }
};

// Correctness: one element, odd hidden sizes (the element-wise path), a 3-D input, a partial
// last block, LLaMA-7B's hidden size, and one (8192) that needs more than 48 KB of shared
// memory on the GPU.
inline constexpr RmsnormShape kRmsnorm[] = {{1, 1, 1},    {1, 1, 7},     {1, 3, 7},
                                            {1, 5, 33},   {2, 3, 10},    {1, 17, 64},
                                            {1, 37, 130}, {1, 65, 1000}, {1, 128, 4096},
                                            {1, 5, 8192}};
// The CPU backward is checked against finite differences in double (cost: the square of the
// size): only cases up to this many elements.
inline constexpr int64_t kRmsnormFiniteDiffMax = 5000;

// Throughput (CPU): LLaMA-7B's hidden size at a prefill batch, a smaller model's, and an odd
// width off every vector size.
inline constexpr RmsnormShape kRmsnormBench[] = {{1, 256, 4096}, {1, 1024, 2048}, {1, 7, 4099}};

}  // namespace beaver::cases
