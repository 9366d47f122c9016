// CUDA sampling vs the definition in csrc/ops/sampling.h and the CPU twin: greedy is exact,
// a seed and step always give the same token, the draws follow the kept distribution
// (chi-square), top-k / top-p never return an excluded token, and the draws agree with the
// CPU twin except where fp32 rounding of the cumulative sums decides. Token outputs carry
// sentinel tails; filters and the kept-set definition: tests/cases/sampling.h.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "attn_testutil.h"
#include "csrc/context.h"
#include "csrc/ops/sampling.h"
#include "tests/cases/sampling.h"
#include "testutil.h"

namespace beaver {
namespace {

std::vector<int32_t> run_gpu(Context& gpu, const std::vector<float>& logits, int B, int V,
                             const ops::SamplingConfig& cfg, const std::vector<int64_t>& seeds,
                             uint64_t step, DType dt = DType::F32) {
  OwnedTensor l = test::to_device(logits, {B, V}, dt);
  OwnedTensor s = test::to_device_int(seeds, {B});
  const test::SentinelTensor t(DType::I32, {B}, Device::CUDA);  // poisoned: -1
  ops::sample(gpu, l, cfg, s, step, t);
  gpu.synchronize();
  test::expect_tail_intact(t, "tokens");
  return test::to_host_int<int32_t>(t);
}

std::vector<int32_t> run_cpu(const std::vector<float>& logits, int B, int V,
                             const ops::SamplingConfig& cfg, const std::vector<int64_t>& seeds,
                             uint64_t step) {
  Context cpu = Context::cpu();
  OwnedTensor l = test::host_tensor(logits, {B, V});
  OwnedTensor s(DType::I64, {B});
  std::copy(seeds.begin(), seeds.end(), s.ptr<int64_t>());
  const test::SentinelTensor t(DType::I32, {B});
  ops::sample(cpu, l, cfg, s, step, t);
  test::expect_tail_intact(t, "tokens (cpu)");
  return {t.ptr<int32_t>(), t.ptr<int32_t>() + B};
}

std::vector<int64_t> seeds_for(int B, int64_t base) {
  std::vector<int64_t> s(static_cast<size_t>(B));
  for (int b = 0; b < B; ++b) s[size_t(b)] = base + 7919 * b;
  return s;
}

// Logits with planted ties (repeated values) so the index tie-break rules are exercised.
std::vector<float> tied_logits(int B, int V, uint64_t seed, float spread) {
  auto v = test::random_vec(size_t(B) * V, seed, -spread, spread);
  for (auto& x : v) x = std::round(x * 8.0f) / 8.0f;  // coarse grid: many equal values
  return v;
}

TEST(SamplingCuda, GreedyEqualsCpuIncludingTies) {
  BEAVER_REQUIRE_CUDA();
  Context gpu = Context::cuda();
  const int B = 16, V = 3001;
  auto logits = tied_logits(B, V, 11, 2.0f);
  logits[size_t(3) * V + 5] = logits[size_t(3) * V + 2000] = 10.0f;  // tie for the max
  const ops::SamplingConfig cfg{0.0f, 0, 1.0f};
  const auto seeds = seeds_for(B, 1);
  const auto cpu = run_cpu(logits, B, V, cfg, seeds, 0);
  EXPECT_EQ(run_gpu(gpu, logits, B, V, cfg, seeds, 0), cpu);
  EXPECT_EQ(cpu[3], 5);
  // bf16 logits: the same as the CPU on the rounded values.
  const auto rounded = test::round_bf16(logits);
  EXPECT_EQ(run_gpu(gpu, logits, B, V, cfg, seeds, 0, DType::BF16),
            run_cpu(rounded, B, V, cfg, seeds, 0));
}

TEST(SamplingCuda, SameSeedSameTokenAndStepsDiffer) {
  BEAVER_REQUIRE_CUDA();
  Context gpu = Context::cuda();
  const int B = 64, V = 32000;
  const auto logits = test::random_vec(size_t(B) * V, 21, -4.0f, 4.0f);
  const ops::SamplingConfig cfg{1.0f, 50, 0.9f};
  const auto seeds = seeds_for(B, 99);
  const auto a = run_gpu(gpu, logits, B, V, cfg, seeds, 3);
  EXPECT_EQ(run_gpu(gpu, logits, B, V, cfg, seeds, 3), a);
  const auto c = run_gpu(gpu, logits, B, V, cfg, seeds, 4);
  EXPECT_NE(c, a) << "a different step should change some draws";
}

// Draws over many seeds on a small vocabulary follow the kept, renormalised distribution.
TEST(SamplingCuda, ChiSquareMatchesDistribution) {
  BEAVER_REQUIRE_CUDA();
  Context gpu = Context::cuda();
  const int V = 8, B = 8192;
  const std::vector<float> row = {0.5f, -1.0f, 2.0f, 0.0f, 1.0f, -0.5f, 1.5f, -2.0f};
  std::vector<float> logits;
  for (int b = 0; b < B; ++b) logits.insert(logits.end(), row.begin(), row.end());
  for (const ops::SamplingConfig cfg : {ops::SamplingConfig{1.0f, 0, 1.0f},
                                        ops::SamplingConfig{0.7f, 5, 1.0f},
                                        ops::SamplingConfig{1.3f, 0, 0.8f}}) {
    SCOPED_TRACE(testing::Message() << "T=" << cfg.temperature << " k=" << cfg.top_k
                                    << " p=" << cfg.top_p);
    const auto toks = run_gpu(gpu, logits, B, V, cfg, seeds_for(B, 12345), 0);
    const auto keep = cases::kept_by_definition(row.data(), V, cfg);
    const float mx = *std::max_element(row.begin(), row.end());
    double mass = 0.0;
    std::vector<double> p(static_cast<size_t>(V), 0.0);
    for (int i = 0; i < V; ++i)
      if (keep[size_t(i)]) mass += (p[size_t(i)] = std::exp(double(row[size_t(i)] - mx) / cfg.temperature));
    std::vector<int> count(static_cast<size_t>(V), 0);
    for (int t : toks) {
      ASSERT_TRUE(t >= 0 && t < V) << "token " << t;
      ++count[size_t(t)];
    }
    double chi2 = 0.0;
    int dof = -1;
    for (int i = 0; i < V; ++i) {
      if (!keep[size_t(i)]) {
        EXPECT_EQ(count[size_t(i)], 0) << "excluded token " << i << " drawn";
        continue;
      }
      const double e = B * p[size_t(i)] / mass;
      chi2 += (count[size_t(i)] - e) * (count[size_t(i)] - e) / e;
      ++dof;
    }
    // 99.99th percentile of chi-square with <= 7 degrees of freedom is about 29.9.
    EXPECT_LT(chi2, 30.0) << "chi-square " << chi2 << " with " << dof << " dof";
  }
}

TEST(SamplingCuda, TopKTopPNeverReturnExcludedTokens) {
  BEAVER_REQUIRE_CUDA();
  Context gpu = Context::cuda();
  const int B = cases::kSamplingFilterRows, V = cases::kSamplingFilterVocab;
  const auto logits = tied_logits(B, V, 31, 6.0f);
  for (const ops::SamplingConfig& cfg : cases::kSamplingFilters) {
    SCOPED_TRACE(testing::Message() << "T=" << cfg.temperature << " k=" << cfg.top_k
                                    << " p=" << cfg.top_p);
    const auto toks = run_gpu(gpu, logits, B, V, cfg, seeds_for(B, 777), 1);
    for (int b = 0; b < B; ++b) {
      const auto keep = cases::kept_by_definition(logits.data() + size_t(b) * V, V, cfg);
      ASSERT_TRUE(toks[size_t(b)] >= 0 && toks[size_t(b)] < V) << "row " << b;
      EXPECT_TRUE(keep[size_t(toks[size_t(b)])]) << "row " << b << " drew excluded token "
                                                 << toks[size_t(b)];
    }
  }
}

TEST(SamplingCuda, AgreesWithCpuOnMostRows) {
  BEAVER_REQUIRE_CUDA();
  Context gpu = Context::cuda();
  const int B = 256, V = 5003;
  const auto logits = test::random_vec(size_t(B) * V, 41, -5.0f, 5.0f);
  for (const ops::SamplingConfig cfg :
       {ops::SamplingConfig{1.0f, 0, 1.0f}, ops::SamplingConfig{0.8f, 40, 0.9f}}) {
    const auto seeds = seeds_for(B, 2024);
    const auto g = run_gpu(gpu, logits, B, V, cfg, seeds, 7);
    const auto c = run_cpu(logits, B, V, cfg, seeds, 7);
    int same = 0;
    for (int b = 0; b < B; ++b) same += g[size_t(b)] == c[size_t(b)];
    EXPECT_GE(same, B - 3) << "only " << same << " of " << B << " rows agree (k=" << cfg.top_k
                           << ", p=" << cfg.top_p << ")";
  }
}

}  // namespace
}  // namespace beaver
