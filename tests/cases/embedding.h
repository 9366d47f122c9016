// The embedding cases, written once and read by the CPU test (tests/test_embedding.cpp), the
// GPU test (tests/gpu/test_embedding.cpp) and the CPU bench (bench/embedding/cpu.cpp).
#pragma once

#include <cstdint>

namespace beaver::cases {

// T token ids into a V-row table of width H.
struct EmbeddingShape {
  int64_t T, V, H;
  // Work of the CPU finite-difference check: one loss (T·H) per table entry (V·H).
  int64_t finite_diff_cost() const { return T * H * V * H; }
};

// Correctness: one row, more tokens than rows (ids repeat), widths that do and do not allow
// 16-byte packs, LLaMA's 32000-row vocabulary and LLaMA-7B's width.
inline constexpr EmbeddingShape kEmbedding[] = {{1, 1, 1},     {1, 3, 2},         {9, 5, 7},
                                                {17, 6, 5},    {13, 7, 6},        {40, 9, 300},
                                                {300, 40, 333}, {500, 1000, 64},  {257, 32000, 136},
                                                {64, 300, 4096}};
// The CPU backward is checked against finite differences only up to this cost.
inline constexpr int64_t kEmbeddingFiniteDiffMax = 40'000'000;

// Throughput (CPU): LLaMA-7B's width and a smaller model's, over a 2048-row table (a few tens
// of MiB).
inline constexpr EmbeddingShape kEmbeddingBench[] = {{256, 2048, 4096}, {1024, 2048, 2048}};

}  // namespace beaver::cases
