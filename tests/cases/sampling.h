// The sampling cases, written once and read by the CPU test (tests/test_sampling.cpp), the GPU
// test (tests/gpu/test_sampling.cpp) and the CPU bench (bench/sampling/cpu.cpp), with the
// definition of the kept set (csrc/ops/sampling.h) that both tests judge draws by.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "csrc/ops/sampling.h"

namespace beaver::cases {

// Filters (temperature, top_k, top_p): top-1, a typical top-k, top-p alone, both, and a top-p
// so small that one token must remain.
inline constexpr ops::SamplingConfig kSamplingFilters[] = {
    {1.0f, 1, 1.0f}, {0.8f, 50, 1.0f}, {1.0f, 0, 0.5f}, {1.2f, 40, 0.9f}, {1.0f, 0, 1e-6f}};
// The batch and (odd) vocabulary the filters are drawn over, logits on a coarse grid so that
// many are equal and the index tie-breaks decide.
inline constexpr int kSamplingFilterRows = 96, kSamplingFilterVocab = 4099;

// The kept set of one row by the definition: a full sort in double, ranks by (logit desc,
// index asc) for top-k and by (probability desc, index asc) for top-p.
inline std::vector<bool> kept_by_definition(const float* row, int V, const ops::SamplingConfig& cfg) {
  const float mx = *std::max_element(row, row + V);
  std::vector<double> p(static_cast<size_t>(V));
  for (int i = 0; i < V; ++i) p[size_t(i)] = std::exp(double((row[i] - mx) / cfg.temperature));
  std::vector<int> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return row[a] > row[b]; });
  std::vector<bool> keep(static_cast<size_t>(V), true);
  if (cfg.top_k > 0)
    for (size_t r = size_t(cfg.top_k); r < order.size(); ++r) keep[size_t(order[r])] = false;
  if (cfg.top_p < 1.0f) {
    double kept_mass = 0.0;
    for (int i = 0; i < V; ++i) kept_mass += keep[size_t(i)] ? p[size_t(i)] : 0.0;
    std::sort(order.begin(), order.end(), [&](int a, int b) {
      return p[size_t(a)] != p[size_t(b)] ? p[size_t(a)] > p[size_t(b)] : a < b;
    });
    double cum = 0.0;
    bool done = false;
    for (int i : order) {
      if (!keep[size_t(i)]) continue;
      if (done) {
        keep[size_t(i)] = false;
        continue;
      }
      cum += p[size_t(i)];
      if (cum >= cfg.top_p * kept_mass) done = true;
    }
  }
  return keep;
}

// Throughput (CPU): 64 rows over LLaMA-2's 32000-token vocabulary, one case per filter kind.
struct SamplingBenchCase {
  const char* name;
  ops::SamplingConfig cfg;
};
inline constexpr int64_t kSamplingBenchRows = 64, kSamplingBenchVocab = 32000;
inline constexpr SamplingBenchCase kSamplingBench[] = {{"top_p_0_9", {1.0f, 0, 0.9f}},
                                                       {"top_k_50", {1.0f, 50, 1.0f}},
                                                       {"temperature", {0.8f, 0, 1.0f}},
                                                       {"greedy", {0.0f, 0, 1.0f}}};

}  // namespace beaver::cases
