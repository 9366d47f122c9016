// Sampling on the CPU: greedy ties, per-seed determinism, chi-square goodness of fit of many
// draws against the exact (renormalised) distribution, the top-k and top-p cut-offs, and bad
// arguments. Every chi-square test uses the critical value for a false-failure rate of 1e-5
// (inputs and seeds are fixed, so each test is in fact deterministic), and each one also checks
// that the same draws reject a plausible wrong distribution.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "csrc/ops/sampling.h"
#include "tests/cases/sampling.h"
#include "testutil.h"

namespace beaver {
namespace {

// Upper 1e-5 quantiles of the chi-square distribution, by degrees of freedom.
double chi2_crit(int df) {
  switch (df) {
    case 1: return 19.5114;
    case 2: return 23.0259;
    case 3: return 25.9017;
    case 9: return 39.3407;
  }
  ADD_FAILURE() << "no critical value for df " << df;
  return 0.0;
}

OwnedTensor seed_tensor(int64_t B, int64_t first) {
  OwnedTensor s(DType::I64, Shape{B});
  for (int64_t b = 0; b < B; ++b) s.ptr<int64_t>()[b] = first + 7919 * b;
  return s;
}

// The same logits row repeated B times.
OwnedTensor repeat_rows(const std::vector<float>& row, int64_t B) {
  std::vector<float> all;
  for (int64_t b = 0; b < B; ++b) all.insert(all.end(), row.begin(), row.end());
  return test::host_tensor(all, Shape{B, int64_t(row.size())});
}

// Exact softmax at a temperature, in double.
std::vector<double> softmax(const std::vector<float>& x, double temp) {
  double m = *std::max_element(x.begin(), x.end());
  std::vector<double> p(x.size());
  double s = 0.0;
  for (size_t i = 0; i < x.size(); ++i) s += p[i] = std::exp((double(x[i]) - m) / temp);
  for (auto& q : p) q /= s;
  return p;
}

// Counts of B * steps draws of one repeated row (different seeds and steps: independent).
std::vector<int64_t> draw_counts(const std::vector<float>& row, const ops::SamplingConfig& cfg,
                                 int64_t B, int steps) {
  Context ctx = Context::cpu(2);
  auto logits = repeat_rows(row, B);
  auto seeds = seed_tensor(B, 1000);
  const test::SentinelTensor tokens(DType::I32, Shape{B});
  std::vector<int64_t> counts(row.size(), 0);
  for (int s = 0; s < steps; ++s) {
    ops::sample(ctx, logits, cfg, seeds, uint64_t(s), tokens);
    for (int64_t b = 0; b < B; ++b) {
      const int32_t t = tokens.ptr<int32_t>()[b];
      EXPECT_TRUE(t >= 0 && t < int32_t(row.size())) << "token " << t;
      if (t >= 0 && t < int32_t(row.size())) ++counts[size_t(t)];
    }
  }
  test::expect_tail_intact(tokens, "tokens");
  return counts;
}

// Pearson's statistic over the cells with p > 0; draws in a p = 0 cell make it infinite.
double chi2(const std::vector<int64_t>& counts, const std::vector<double>& p) {
  int64_t n = 0;
  for (auto c : counts) n += c;
  double x = 0.0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0.0) {
      if (counts[i] > 0) return INFINITY;
      continue;
    }
    const double e = double(n) * p[i];
    x += (double(counts[i]) - e) * (double(counts[i]) - e) / e;
  }
  return x;
}

// The shared filters (tests/cases/sampling.h) over tied logits: every draw is in the kept set
// of the definition.
TEST(Sampling, SharedFiltersNeverReturnExcludedTokens) {
  Context ctx = Context::cpu(2);
  const int64_t B = cases::kSamplingFilterRows, V = cases::kSamplingFilterVocab;
  auto logits = test::random_tensor(Shape{B, V}, 31, -6.0f, 6.0f);
  float* x = logits.ptr<float>();
  for (int64_t i = 0; i < B * V; ++i) x[i] = std::round(x[i] * 8.0f) / 8.0f;  // many ties
  auto seeds = seed_tensor(B, 777);
  for (const ops::SamplingConfig& cfg : cases::kSamplingFilters) {
    SCOPED_TRACE(testing::Message() << "T=" << cfg.temperature << " k=" << cfg.top_k
                                    << " p=" << cfg.top_p);
    const test::SentinelTensor tokens(DType::I32, Shape{B});
    ops::sample(ctx, logits, cfg, seeds, 1, tokens);
    test::expect_tail_intact(tokens, "tokens");
    for (int64_t b = 0; b < B; ++b) {
      const int32_t t = tokens.ptr<int32_t>()[b];
      ASSERT_TRUE(t >= 0 && t < V) << "row " << b << " token " << t;
      const auto keep = cases::kept_by_definition(x + b * V, int(V), cfg);
      EXPECT_TRUE(keep[size_t(t)]) << "row " << b << " drew excluded token " << t;
    }
  }
}

TEST(Sampling, GreedyTakesLowestIndexAmongMaxima) {
  Context ctx = Context::cpu(2);
  auto logits = test::host_tensor({1, 5, 3, 5, 5,        //
                                   -INFINITY, -2, -2, -3, -INFINITY,  //
                                   9, 9, 9, 9, 9},
                                  Shape{3, 5});
  auto seeds = seed_tensor(3, 1);
  OwnedTensor tokens(DType::I32, Shape{3});
  ops::SamplingConfig cfg;
  cfg.temperature = 0.0f;
  cfg.top_k = 3;  // ignored by greedy
  cfg.top_p = 0.5f;
  ops::sample(ctx, logits, cfg, seeds, 0, tokens);
  EXPECT_EQ(tokens.ptr<int32_t>()[0], 1);
  EXPECT_EQ(tokens.ptr<int32_t>()[1], 1);
  EXPECT_EQ(tokens.ptr<int32_t>()[2], 0);
}

// Same (seed, step): same token, for 1 and 2 threads. Different steps (or seeds) of a flat
// distribution over 1000 tokens: many different tokens.
TEST(Sampling, PerSeedDeterminism) {
  const int64_t B = 8, V = 1000;
  auto logits = test::random_tensor(Shape{B, V}, 3, -0.1f, 0.1f);
  auto seeds = seed_tensor(B, 5);
  OwnedTensor a(DType::I32, Shape{B}), b(DType::I32, Shape{B});
  Context c1 = Context::cpu(1), c2 = Context::cpu(2);
  const ops::SamplingConfig cfg;
  std::set<int32_t> over_steps, over_seeds;
  for (uint64_t step = 0; step < 40; ++step) {
    ops::sample(c1, logits, cfg, seeds, step, a);
    ops::sample(c2, logits, cfg, seeds, step, b);
    for (int64_t r = 0; r < B; ++r) ASSERT_EQ(a.ptr<int32_t>()[r], b.ptr<int32_t>()[r]);
    ops::sample(c2, logits, cfg, seeds, step, b);
    for (int64_t r = 0; r < B; ++r) ASSERT_EQ(a.ptr<int32_t>()[r], b.ptr<int32_t>()[r]);
    over_steps.insert(a.ptr<int32_t>()[0]);
    if (step == 0)
      for (int64_t r = 0; r < B; ++r) over_seeds.insert(a.ptr<int32_t>()[r]);
  }
  EXPECT_GE(over_steps.size(), 30u);  // 40 draws from ~uniform over 1000
  EXPECT_GE(over_seeds.size(), 6u);   // 8 rows, different seeds
  // The draw is the documented one: u = philox_uniform(seed, step, 0) against the CDF.
  auto two = test::host_tensor({0.0f, 0.0f}, Shape{1, 2});
  OwnedTensor one_seed(DType::I64, Shape{1}), tok(DType::I32, Shape{1});
  for (uint64_t step = 0; step < 20; ++step) {
    one_seed.ptr<int64_t>()[0] = 77;
    ops::sample(c1, two, cfg, one_seed, step, tok);
    EXPECT_EQ(tok.ptr<int32_t>()[0], philox_uniform(77, step, 0) < 0.5f ? 0 : 1) << step;
  }
}

// 20000 draws over V = 10 at temperature 1 and 0.7 against the exact softmax; the same draws
// must reject the distribution with the temperature ignored (or wrongly applied).
TEST(Sampling, ChiSquareMatchesSoftmax) {
  const std::vector<float> row = {0.3f, -1.2f, 1.5f, 0.0f, 0.9f, -0.4f, 1.1f, -1.5f, 0.6f, 0.2f};
  for (float temp : {1.0f, 0.7f}) {
    SCOPED_TRACE("temperature " + std::to_string(temp));
    ops::SamplingConfig cfg;
    cfg.temperature = temp;
    const auto counts = draw_counts(row, cfg, 2000, 10);
    const double x = chi2(counts, softmax(row, temp));
    EXPECT_LT(x, chi2_crit(9));
    const double wrong = chi2(counts, softmax(row, temp == 1.0f ? 0.7 : 1.0));
    EXPECT_GT(wrong, chi2_crit(9)) << "the test cannot tell temperatures apart";
  }
}

// top_k = 3 with a tie at the cut: rank is (logit desc, index asc), so of the two tokens with
// the third-highest logit only the lower index is kept. Draws follow the renormalised
// distribution over the three.
TEST(Sampling, TopKKeepsExactlyTheTopK) {
  const std::vector<float> row = {0.3f, -1.2f, 0.9f, 0.0f, 1.5f, -0.4f, 1.1f, 0.9f, 0.6f, 0.2f};
  // Ranks: 4 (1.5), 6 (1.1), 2 (0.9, lower index than 7).
  ops::SamplingConfig cfg;
  cfg.top_k = 3;
  const auto counts = draw_counts(row, cfg, 2000, 5);
  auto p = softmax(row, 1.0);
  std::vector<double> kept(p.size(), 0.0);
  double mass = p[4] + p[6] + p[2];
  for (int i : {4, 6, 2}) kept[size_t(i)] = p[size_t(i)] / mass;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (kept[i] == 0.0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " is outside the top 3";
    }
  }
  EXPECT_LT(chi2(counts, kept), chi2_crit(2));
  // Not renormalised by index order (keeping 7 instead of 2) would be caught above; the
  // unrenormalised-at-temperature-0.7 alternative must be rejected by these draws.
  std::vector<double> wrong(p.size(), 0.0);
  auto p7 = softmax(row, 0.7);
  const double m7 = p7[4] + p7[6] + p7[2];
  for (int i : {4, 6, 2}) wrong[size_t(i)] = p7[size_t(i)] / m7;
  EXPECT_GT(chi2(counts, wrong), chi2_crit(2));
}

TEST(Sampling, TopKOneEqualsGreedy) {
  Context ctx = Context::cpu(2);
  const int64_t B = 16, V = 1003;
  auto logits = test::random_tensor(Shape{B, V}, 9, -3.0f, 3.0f);
  float* x = logits.ptr<float>();
  for (int64_t b = 0; b < B; b += 3) x[b * V + 500] = x[b * V + 900] = x[b * V + 20] = 4.0f;
  auto seeds = seed_tensor(B, 2);
  OwnedTensor g(DType::I32, Shape{B}), k(DType::I32, Shape{B});
  ops::SamplingConfig greedy;
  greedy.temperature = 0.0f;
  ops::SamplingConfig top1;
  top1.top_k = 1;
  top1.top_p = 0.9f;
  ops::sample(ctx, logits, greedy, seeds, 0, g);
  for (uint64_t step = 0; step < 5; ++step) {
    ops::sample(ctx, logits, top1, seeds, step, k);
    for (int64_t b = 0; b < B; ++b) EXPECT_EQ(k.ptr<int32_t>()[b], g.ptr<int32_t>()[b]) << b;
  }
  EXPECT_EQ(g.ptr<int32_t>()[0], 20);
  // A vanishing (even subnormal) temperature samples among the maxima only (never NaN).
  ops::SamplingConfig cold;
  cold.temperature = 1e-40f;
  ops::sample(ctx, logits, cold, seeds, 0, k);
  for (int64_t b = 0; b < B; ++b) {
    const int32_t t = k.ptr<int32_t>()[b];
    ASSERT_TRUE(t >= 0 && t < V) << b;
    EXPECT_EQ(x[b * V + t], x[b * V + g.ptr<int32_t>()[b]]) << "row " << b << " token " << t;
  }
}

// Probabilities 0.3, 0.05, 0.5, 0.15 (index order shuffled against probability order).
// top_p 0.79: the shortest prefix by probability is {2, 0} (0.8 >= 0.79); 0.81 adds 3;
// 0.45 keeps only 2 (one token suffices). Kept draws follow the renormalised distribution.
// (top_p = 0.8 exactly sits on the boundary, where fp32 rounding of the masses decides.)
TEST(Sampling, TopPKeepsShortestPrefix) {
  const std::vector<float> row = {std::log(0.3f), std::log(0.05f), std::log(0.5f),
                                  std::log(0.15f)};
  const std::vector<double> p = {0.3, 0.05, 0.5, 0.15};
  struct Want {
    float top_p;
    std::vector<int> kept;
    int df;
  };
  for (const auto& w : {Want{0.79f, {2, 0}, 1}, Want{0.81f, {2, 0, 3}, 2}, Want{0.45f, {2}, 0}}) {
    SCOPED_TRACE("top_p " + std::to_string(w.top_p));
    ops::SamplingConfig cfg;
    cfg.top_p = w.top_p;
    const auto counts = draw_counts(row, cfg, 2000, 3);
    std::vector<double> kept(4, 0.0);
    double mass = 0.0;
    for (int i : w.kept) mass += p[size_t(i)];
    for (int i : w.kept) kept[size_t(i)] = p[size_t(i)] / mass;
    for (size_t i = 0; i < 4; ++i) {
      if (kept[i] == 0.0) {
        EXPECT_EQ(counts[i], 0) << "token " << i << " should be cut";
      }
    }
    if (w.df > 0) {
      EXPECT_LT(chi2(counts, kept), chi2_crit(w.df));
    }
  }
  // Equal probabilities at the cut: the lower index comes first.
  const std::vector<float> tie = {0.0f, 2.0f, 2.0f, -9.0f};
  ops::SamplingConfig cfg;
  cfg.top_p = 0.4f;
  const auto counts = draw_counts(tie, cfg, 500, 1);
  EXPECT_EQ(counts[1], 500);
}

// A flat distribution over 3000 tokens with top_p 0.5 keeps ~1500 tokens, far more than the
// first selection round: every draw must lie inside the reference prefix for top_p 0.51 (a
// superset, so rounding at the cut cannot matter), and the draws must spread over it.
TEST(Sampling, TopPLargePrefix) {
  const int64_t V = 3000;
  const auto row = test::random_vec(size_t(V), 31, -1.0f, 1.0f);
  ops::SamplingConfig cfg;
  cfg.top_p = 0.5f;
  const auto counts = draw_counts(row, cfg, 200, 5);
  std::vector<double> p(static_cast<size_t>(V));
  const double mx = *std::max_element(row.begin(), row.end());
  double total = 0.0;
  for (size_t v = 0; v < p.size(); ++v) total += p[v] = std::exp(double(row[v]) - mx);
  std::vector<size_t> order(p.size());
  for (size_t v = 0; v < order.size(); ++v) order[v] = v;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
  std::vector<bool> allowed(p.size(), false);
  double cum = 0.0;
  for (size_t r = 0; r < order.size() && cum < 0.51 * total; ++r) {
    cum += p[order[r]];
    allowed[order[r]] = true;
  }
  size_t distinct = 0;
  for (size_t v = 0; v < counts.size(); ++v) {
    if (counts[v] > 0) ++distinct;
    if (!allowed[v]) {
      EXPECT_EQ(counts[v], 0) << "token " << v << " lies outside the top-p prefix";
    }
  }
  EXPECT_GT(distinct, 500u);  // 1000 draws over ~1500 kept tokens
}

TEST(Sampling, BadArguments) {
  Context ctx = Context::cpu(1);
  auto logits = test::random_tensor(Shape{2, 5}, 1);
  auto seeds = seed_tensor(2, 1);
  OwnedTensor tokens(DType::I32, Shape{2});
  const ops::SamplingConfig cfg;
  auto expect_error = [&](auto&& call, const std::string& what) {
    try {
      call();
      ADD_FAILURE() << "expected an error mentioning '" << what << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  auto flat = test::random_tensor(Shape{10}, 2);
  expect_error([&] { ops::sample(ctx, flat, cfg, seeds, 0, tokens); }, "sample: logits");
  OwnedTensor ilogits(DType::I32, Shape{2, 5});
  expect_error([&] { ops::sample(ctx, ilogits, cfg, seeds, 0, tokens); }, "sample: logits");
  OwnedTensor seeds32(DType::I32, Shape{2});
  expect_error([&] { ops::sample(ctx, logits, cfg, seeds32, 0, tokens); }, "sample: seeds");
  auto seeds3 = seed_tensor(3, 1);
  expect_error([&] { ops::sample(ctx, logits, cfg, seeds3, 0, tokens); }, "sample: seeds");
  OwnedTensor ftokens(DType::F32, Shape{2});
  expect_error([&] { ops::sample(ctx, logits, cfg, seeds, 0, ftokens); }, "sample: tokens");
  OwnedTensor blogits(DType::BF16, Shape{2, 5});
  expect_error([&] { ops::sample(ctx, blogits, cfg, seeds, 0, tokens); }, "CPU backend");
  for (auto bad : {ops::SamplingConfig{-1.0f, 0, 1.0f}, ops::SamplingConfig{NAN, 0, 1.0f},
                   ops::SamplingConfig{1.0f, -2, 1.0f}, ops::SamplingConfig{1.0f, 0, 0.0f},
                   ops::SamplingConfig{1.0f, 0, 1.5f}})
    expect_error([&] { ops::sample(ctx, logits, bad, seeds, 0, tokens); }, "sample: ");
  logits.ptr<float>()[7] = NAN;
  expect_error([&] { ops::sample(ctx, logits, cfg, seeds, 0, tokens); }, "logits row 1");
  ops::SamplingConfig greedy;
  greedy.temperature = 0.0f;
  expect_error([&] { ops::sample(ctx, logits, greedy, seeds, 0, tokens); }, "logits row 1");
}

}  // namespace
}  // namespace beaver
