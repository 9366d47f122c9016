// Log-softmax + gather and cross-entropy on the CPU: forward vs a double-precision reference,
// backward vs central finite differences in double, vocabularies that are not multiples of
// anything, huge logits, ignored rows, in-place gradients and bad arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "csrc/ops/logprob.h"
#include "tests/cases/logprob.h"
#include "testutil.h"

namespace beaver {
namespace {

using test::random_vec;

double ref_lse(const double* x, int64_t V) {
  double m = x[0];
  for (int64_t v = 1; v < V; ++v) m = std::max(m, x[v]);
  double s = 0.0;
  for (int64_t v = 0; v < V; ++v) s += std::exp(x[v] - m);
  return m + std::log(s);
}

// Targets spread over the vocabulary, including 0 and V - 1.
std::vector<int32_t> make_targets(int64_t T, int64_t V, uint64_t seed) {
  PhiloxStream rng(seed, 5);
  std::vector<int32_t> t(static_cast<size_t>(T));
  for (int64_t i = 0; i < T; ++i) t[size_t(i)] = int32_t(rng.next_u32() % uint32_t(V));
  if (T > 0) t[0] = 0;
  if (T > 1) t[size_t(T - 1)] = int32_t(V - 1);
  return t;
}

using Case = cases::LogprobShape;

class LogprobSizes : public ::testing::TestWithParam<Case> {};

// Forward (both signs) against the double reference, and the backward against central finite
// differences of sum_t w_t * out_t(x) in double (each row's output depends on its row only).
TEST_P(LogprobSizes, ForwardAndBackwardMatchDoubleReference) {
  const auto [T, V] = GetParam();
  Context ctx = Context::cpu(2);
  const auto xv = random_vec(size_t(T * V), 11 + uint64_t(V), -4.0f, 4.0f);
  auto logits = test::host_tensor(xv, Shape{T, V});
  auto targets = test::int_tensor(make_targets(T, V, 3), Shape{T});
  const auto w = random_vec(size_t(T), 21, 0.5f, 1.5f);
  auto dout = test::host_tensor(w, Shape{T});
  const std::vector<double> x(xv.begin(), xv.end());
  const int32_t* tg = targets.ptr<int32_t>();

  for (float sign : {1.0f, -1.0f}) {
    SCOPED_TRACE(sign > 0 ? "logprob" : "cross_entropy");
    const test::SentinelTensor out(DType::F32, Shape{T}), lse(DType::F32, Shape{T});  // poisoned
    if (sign > 0)
      ops::logprob_fwd(ctx, logits, targets, out, lse);
    else
      ops::cross_entropy_fwd(ctx, logits, targets, out, lse);
    std::vector<double> want_out(static_cast<size_t>(T)), want_lse(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      want_lse[size_t(t)] = ref_lse(&x[size_t(t * V)], V);
      want_out[size_t(t)] = sign * (x[size_t(t * V + tg[t])] - want_lse[size_t(t)]);
    }
    BEAVER_EXPECT_CLOSE(test::to_double(out), want_out, 1e-5, 1.0);
    BEAVER_EXPECT_CLOSE(test::to_double(lse), want_lse, 1e-5, 1.0);

    const test::SentinelTensor dlogits(DType::F32, Shape{T, V});  // poisoned
    if (sign > 0)
      ops::logprob_bwd(ctx, logits, targets, lse, dout, dlogits);
    else
      ops::cross_entropy_bwd(ctx, logits, targets, lse, dout, dlogits);
    const auto got = test::to_double(dlogits);
    // Finite differences on a subset of columns for the big vocabularies (cost is V per
    // column), always including the target column.
    const int64_t stride = V > 2000 ? V / 97 : 1;
    std::vector<double> g_got, g_want;
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> row(x.begin() + t * V, x.begin() + (t + 1) * V);
      const double wt = w[size_t(t)];
      const int32_t tt = tg[t];
      auto f = [&](const std::vector<double>& r) {
        return sign * wt * (r[size_t(tt)] - ref_lse(r.data(), V));
      };
      for (int64_t v = 0; v < V; ++v) {
        if (v % stride != 0 && v != tt) continue;
        const double x0 = row[size_t(v)];
        const double h = 1e-5;
        row[size_t(v)] = x0 + h;
        const double fp = f(row);
        row[size_t(v)] = x0 - h;
        const double fm = f(row);
        row[size_t(v)] = x0;
        g_want.push_back((fp - fm) / (2 * h));
        g_got.push_back(got[size_t(t * V + v)]);
      }
    }
    BEAVER_EXPECT_CLOSE(g_got, g_want, 2e-4, 1e-4);
    test::expect_tail_intact(out, "out");
    test::expect_tail_intact(lse, "lse");
    test::expect_tail_intact(dlogits, "dlogits");
  }
}

INSTANTIATE_TEST_SUITE_P(Vocab, LogprobSizes,
                         ::testing::ValuesIn(cases::kLogprob),
                         [](const auto& param_info) {
                           return "T" + std::to_string(param_info.param.T) + "_V" +
                                  std::to_string(param_info.param.V);
                         });

// Logits of +-1e4: all rows finite and equal to the (stable) reference; rows of identical huge
// logits are the overflow/underflow traps for a naive exp.
TEST(Logprob, HugeLogitsAreStable) {
  Context ctx = Context::cpu(2);
  const int64_t T = 4, V = 1003;
  auto xv = random_vec(size_t(T * V), 5, -1e4f, 1e4f);
  for (int64_t v = 0; v < V; ++v) {
    xv[size_t(2 * V + v)] = 1e4f;
    xv[size_t(3 * V + v)] = -1e4f;
  }
  auto logits = test::host_tensor(xv, Shape{T, V});
  auto targets = test::int_tensor({5, 17, 1000, 3}, Shape{T});
  OwnedTensor logp(DType::F32, Shape{T}), lse(DType::F32, Shape{T});
  test::poison(logp);
  test::poison(lse);
  ops::logprob_fwd(ctx, logits, targets, logp, lse);
  const std::vector<double> x(xv.begin(), xv.end());
  std::vector<double> want(static_cast<size_t>(T)), want_lse(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    want_lse[size_t(t)] = ref_lse(&x[size_t(t * V)], V);
    want[size_t(t)] = x[size_t(t * V + targets.ptr<int32_t>()[t])] - want_lse[size_t(t)];
  }
  // fp32 holds 1e4 + log(V) only to about one ulp of 1e4 (~1e-3): that is the floor.
  BEAVER_EXPECT_CLOSE(test::to_double(logp), want, 1.5e-7, 1e4);
  BEAVER_EXPECT_CLOSE(test::to_double(lse), want_lse, 1.5e-7, 1e4);
  EXPECT_NEAR(logp.ptr<float>()[2], -std::log(double(V)), 1e-3);
  EXPECT_NEAR(logp.ptr<float>()[3], -std::log(double(V)), 1e-3);

  auto dlogp = test::random_tensor(Shape{T}, 8, 0.5f, 1.5f);
  OwnedTensor dx(DType::F32, Shape{T, V});
  test::poison(dx);
  ops::logprob_bwd(ctx, logits, targets, lse, dlogp, dx);
  for (int64_t i = 0; i < T * V; ++i) ASSERT_TRUE(std::isfinite(dx.ptr<float>()[i])) << i;
  // Uniform rows: gradient g * (1[v = target] - 1/V).
  const float g2 = dlogp.ptr<float>()[2];
  EXPECT_NEAR(dx.ptr<float>()[2 * V + 0], -g2 / double(V), 1e-6);
  EXPECT_NEAR(dx.ptr<float>()[2 * V + 1000], g2 * (1.0 - 1.0 / double(V)), 1e-5);
}

// ignore_index rows: logp 0, lse 0, zero gradient row; other rows unaffected. A custom
// ignore_index (-1) is honoured and the default one is then an error.
TEST(Logprob, IgnoredRows) {
  Context ctx = Context::cpu(2);
  const int64_t T = 4, V = 7;
  auto logits = test::random_tensor(Shape{T, V}, 9, -3.0f, 3.0f);
  for (int ignore : {ops::kIgnoreIndex, -1}) {
    auto targets = test::int_tensor({2, ignore, 6, ignore}, Shape{T});
    OwnedTensor loss(DType::F32, Shape{T}), lse(DType::F32, Shape{T});
    test::poison(loss);
    test::poison(lse);
    ops::cross_entropy_fwd(ctx, logits, targets, loss, lse, ignore);
    EXPECT_EQ(loss.ptr<float>()[1], 0.0f);
    EXPECT_EQ(lse.ptr<float>()[1], 0.0f);
    EXPECT_EQ(loss.ptr<float>()[3], 0.0f);
    EXPECT_EQ(lse.ptr<float>()[3], 0.0f);
    EXPECT_GT(loss.ptr<float>()[0], 0.0f);
    EXPECT_GT(lse.ptr<float>()[2], 0.0f);
    auto dloss = test::random_tensor(Shape{T}, 4, 0.5f, 1.5f);
    OwnedTensor dx(DType::F32, Shape{T, V});
    test::poison(dx);
    ops::cross_entropy_bwd(ctx, logits, targets, lse, dloss, dx, ignore);
    for (int64_t v = 0; v < V; ++v) {
      EXPECT_EQ(dx.ptr<float>()[1 * V + v], 0.0f);
      EXPECT_EQ(dx.ptr<float>()[3 * V + v], 0.0f);
      EXPECT_NE(dx.ptr<float>()[0 * V + v], 0.0f);
    }
  }
  auto targets = test::int_tensor({2, ops::kIgnoreIndex, 6, 0}, Shape{T});
  OwnedTensor loss(DType::F32, Shape{T}), lse(DType::F32, Shape{T});
  EXPECT_THROW(ops::cross_entropy_fwd(ctx, logits, targets, loss, lse, -1), Error);
}

// dlogits may alias logits: same bits as the out-of-place result.
TEST(Logprob, InPlaceBackwardMatchesOutOfPlace) {
  Context ctx = Context::cpu(2);
  const int64_t T = 6, V = 1003;
  auto logits = test::random_tensor(Shape{T, V}, 12, -5.0f, 5.0f);
  auto targets = test::int_tensor(make_targets(T, V, 4), Shape{T});
  targets.ptr<int32_t>()[2] = ops::kIgnoreIndex;
  OwnedTensor logp(DType::F32, Shape{T}), lse(DType::F32, Shape{T});
  ops::logprob_fwd(ctx, logits, targets, logp, lse);
  auto dlogp = test::random_tensor(Shape{T}, 13);
  OwnedTensor dx(DType::F32, Shape{T, V});
  test::poison(dx);
  ops::logprob_bwd(ctx, logits, targets, lse, dlogp, dx);
  ops::logprob_bwd(ctx, logits, targets, lse, dlogp, logits);  // in place
  for (int64_t i = 0; i < T * V; ++i)
    ASSERT_EQ(f32_bits(logits.ptr<float>()[i]), f32_bits(dx.ptr<float>()[i])) << "element " << i;
}

// Leading dims are rows: logits [2, 3, V] with targets [2, 3] equals the flat [6, V] call.
TEST(Logprob, LeadingDimsAreRows) {
  Context ctx = Context::cpu(1);
  const int64_t V = 7;
  auto logits = test::random_tensor(Shape{2, 3, V}, 14);
  auto targets = test::int_tensor({0, 1, 2, 3, 4, 5}, Shape{2, 3});
  OwnedTensor a(DType::F32, Shape{2, 3}), la(DType::F32, Shape{2, 3});
  OwnedTensor b(DType::F32, Shape{6}), lb(DType::F32, Shape{6});
  ops::logprob_fwd(ctx, logits, targets, a, la);
  ops::logprob_fwd(ctx, logits.view().view(Shape{6, V}), targets.view().view(Shape{6}), b, lb);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(a.ptr<float>()[i], b.ptr<float>()[i]);
}

// A NaN logit poisons its own row (NaN logp and lse) and no other.
TEST(Logprob, NaNStaysInItsRow) {
  Context ctx = Context::cpu(2);
  const int64_t T = 3, V = 2000;
  auto logits = test::random_tensor(Shape{T, V}, 18);
  logits.ptr<float>()[1 * V + 1500] = NAN;
  auto targets = test::int_tensor({1, 2, 3}, Shape{T});
  OwnedTensor logp(DType::F32, Shape{T}), lse(DType::F32, Shape{T});
  ops::logprob_fwd(ctx, logits, targets, logp, lse);
  EXPECT_TRUE(std::isfinite(logp.ptr<float>()[0]));
  EXPECT_TRUE(std::isnan(logp.ptr<float>()[1]));
  EXPECT_TRUE(std::isnan(lse.ptr<float>()[1]));
  EXPECT_TRUE(std::isfinite(logp.ptr<float>()[2]));
}

TEST(Logprob, BadTargetsNameRowAndId) {
  Context ctx = Context::cpu(2);
  const int64_t T = 4, V = 7;
  auto logits = test::random_tensor(Shape{T, V}, 15);
  OwnedTensor out(DType::F32, Shape{T}), lse(DType::F32, Shape{T});
  for (int bad : {7, -1, 1000000}) {
    auto targets = test::int_tensor({0, 6, bad, 3}, Shape{T});
    try {
      ops::logprob_fwd(ctx, logits, targets, out, lse);
      FAIL() << "expected an error for target " << bad;
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("row 2"), std::string::npos) << m;
      EXPECT_NE(m.find("target " + std::to_string(bad)), std::string::npos) << m;
    }
    OwnedTensor dx(DType::F32, Shape{T, V});
    EXPECT_THROW(ops::cross_entropy_bwd(ctx, logits, targets, lse, out, dx), Error);
  }
}

TEST(Logprob, BadShapesAndDtypes) {
  Context ctx = Context::cpu(1);
  auto logits = test::random_tensor(Shape{4, 7}, 16);
  auto targets = test::int_tensor({0, 1, 2, 3}, Shape{4});
  OwnedTensor out(DType::F32, Shape{4}), lse(DType::F32, Shape{4});
  OwnedTensor short_out(DType::F32, Shape{3});
  EXPECT_THROW(ops::logprob_fwd(ctx, logits, targets, short_out, lse), Error);
  auto ftargets = test::random_tensor(Shape{4}, 17);
  try {
    ops::logprob_fwd(ctx, logits, ftargets, out, lse);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("logprob_fwd: targets"), std::string::npos) << e.what();
  }
  OwnedTensor blogits(DType::BF16, Shape{4, 7});
  EXPECT_THROW(ops::logprob_fwd(ctx, blogits, targets, out, lse), Error);  // CPU: f32 only
  OwnedTensor dx(DType::F32, Shape{4, 6});
  EXPECT_THROW(ops::logprob_bwd(ctx, logits, targets, lse, out, dx), Error);
  OwnedTensor empty_vocab(DType::F32, Shape{4, 0});
  EXPECT_THROW(ops::logprob_fwd(ctx, empty_vocab, targets, out, lse), Error);
  EXPECT_THROW(ops::logprob_fwd(ctx, Tensor{}, targets, out, lse), Error);
}

}  // namespace
}  // namespace beaver
