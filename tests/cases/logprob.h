// The logprob / cross-entropy cases, written once and read by the CPU test
// (tests/test_logprob.cpp), the GPU test (tests/gpu/test_logprob.cpp) and the CPU bench
// (bench/logprob/cpu.cpp).
#pragma once

#include <cstdint>

namespace beaver::cases {

// T rows of logits over a vocabulary of V.
struct LogprobShape {
  int64_t T, V;
};

// Correctness: no rows, a one-token vocabulary, odd vocabularies off every vector width,
// LLaMA-2's 32000 (and one more), and LLaMA-3's 128256.
inline constexpr LogprobShape kLogprob[] = {{0, 9},    {1, 1},     {3, 1},     {3, 7},
                                            {5, 7},    {4, 1003},  {5, 1000},  {2, 32001},
                                            {6, 32001}, {4, 32000}, {3, 128256}};

// Throughput (CPU): 512 rows over LLaMA-2's vocabulary.
inline constexpr LogprobShape kLogprobBench = {512, 32000};

}  // namespace beaver::cases
