// The GEMM and linear-layer cases, written once and read by the CPU test (tests/test_gemm.cpp),
// the GPU test (tests/gpu/test_gemm.cpp) and the CPU bench (bench/gemm/cpu.cpp).
#pragma once

#include <cstdint>

namespace beaver::cases {

// C[M, N] = alpha · op(A)[M, K] · op(B)[K, N] + beta · C.
struct GemmShape {
  int64_t M, N, K;
  int64_t macs() const { return M * N * K; }
};

// Correctness (every transpose combination): one element, odd sizes, a row and a column
// vector, and shapes large enough for cuBLASLt's tiled and split-K algorithms.
inline constexpr GemmShape kGemm[] = {{1, 1, 1},      {3, 5, 7},       {5, 7, 3},
                                      {33, 17, 65},   {17, 33, 65},    {1, 129, 31},
                                      {64, 1, 200},   {128, 256, 512}, {70, 300, 2048}};
// The CPU test compares with a double triple loop at a fixed 1e-5 relative tolerance (floored
// at 1), which fp32 accumulation meets for small K: only cases up to this many multiply-adds.
inline constexpr int64_t kGemmCpuRefMax = 1'000'000;

// The linear layer y[T, out] = x[T, in] · W[out, in]^T and its two backward GEMMs (checked on
// the CPU against finite differences, so kept small).
struct LinearShape {
  int64_t T, in, out;
};
inline constexpr LinearShape kLinear[] = {{1, 3, 2}, {7, 13, 5}, {20, 33, 17}};

// Throughput (CPU): square problems and LLaMA-7B's linear layer (x · W^T, so B transposed).
struct GemmBenchShape {
  int64_t M, N, K;
  bool trans_b;
};
inline constexpr GemmBenchShape kGemmBench[] = {
    {256, 256, 256, false}, {1024, 1024, 1024, false}, {64, 4096, 4096, true}};
// The weight gradient dW[H, H] = dy^T · x over T tokens of LLaMA-7B's width.
inline constexpr LinearShape kLinearBwdWeightBench[] = {{64, 4096, 4096}};

}  // namespace beaver::cases
