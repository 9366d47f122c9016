// Score-model losses: values against independent double-precision formulas and hand-computed
// numbers, gradients against central finite differences, metrics, and bad arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "testutil.h"
#include "train/losses.h"

namespace beaver::train {
namespace {

using test::finite_diff;
using test::random_vec;

// Naive -log σ(x) = log(1 + e^{-x}) for the moderate arguments the references use.
double nls(double x) { return std::log(1.0 + std::exp(-x)); }

std::vector<double> as_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

void expect_error_contains(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(LogSigmoid, StableAndAccurate) {
  EXPECT_DOUBLE_EQ(log_sigmoid(0.0), -std::log(2.0));
  for (double x : {-30.0, -3.0, -0.5, 0.25, 2.0, 30.0})
    EXPECT_NEAR(log_sigmoid(x), -nls(x), 1e-14 * std::max(1.0, std::fabs(x))) << x;
  // Far tails: finite, and asymptotically x (left) and -e^{-x} (right).
  EXPECT_DOUBLE_EQ(log_sigmoid(-800.0), -800.0);
  EXPECT_NEAR(log_sigmoid(40.0), -std::exp(-40.0), 1e-30);
  EXPECT_TRUE(std::isfinite(log_sigmoid(-1e6)));
  EXPECT_EQ(sigmoid(-1000.0), 0.0);
  EXPECT_EQ(sigmoid(1000.0), 1.0);
  EXPECT_NEAR(sigmoid(0.3) + sigmoid(-0.3), 1.0, 1e-15);
}

TEST(RewardLoss, HandExample) {
  // d = {1, -2}: (log(1+e^-1) + log(1+e^2)) / 2, plus 0.001·(1 + 0 + 0 + 4)/4.
  const std::vector<float> rb{1.0f, 0.0f}, rw{0.0f, 2.0f};
  const RewardLoss r = reward_loss(rb, rw, 0.001);
  EXPECT_NEAR(r.ranking, (0.31326168751822286 + 2.1269280110429727) / 2, 1e-12);
  EXPECT_NEAR(r.l2, 0.00125, 1e-15);
  EXPECT_NEAR(r.loss, 1.2200948492806 + 0.00125, 1e-12);
  EXPECT_DOUBLE_EQ(r.accuracy, 0.5);
  EXPECT_DOUBLE_EQ(r.reward.mean, 0.75);
  EXPECT_NEAR(r.reward.std, std::sqrt(2.75 / 3.0), 1e-12);
  EXPECT_DOUBLE_EQ(r.better_mean, 0.5);
  EXPECT_DOUBLE_EQ(r.worse_mean, 1.0);
  // d/dr_b[0] = -σ(-1)/2 + 0.001·1/2.
  EXPECT_NEAR(r.grad_better[0], -0.2689414213699951 / 2 + 0.0005, 1e-7);
  EXPECT_NEAR(r.grad_worse[1], 0.8807970779778823 / 2 + 0.001, 1e-7);  // +σ(2)/2 + 0.001·2/2
}

double reward_ref(const std::vector<double>& x, size_t B, double reg) {
  double rank = 0, sq = 0;
  for (size_t i = 0; i < B; ++i) {
    rank += nls(x[i] - x[B + i]);
    sq += x[i] * x[i] + x[B + i] * x[B + i];
  }
  return rank / double(B) + reg * sq / double(2 * B);
}

TEST(RewardLoss, MatchesReferenceAndFiniteDifferences) {
  const size_t B = 7;
  const auto rb = random_vec(B, 11, -3, 3), rw = random_vec(B, 12, -3, 3);
  for (double reg : {0.0, 0.001, 0.5}) {
    const RewardLoss r = reward_loss(rb, rw, reg);
    std::vector<double> x(as_double(rb));
    for (float v : rw) x.push_back(v);
    EXPECT_NEAR(r.loss, reward_ref(x, B, reg), 1e-12);
    const auto g = finite_diff([&](const std::vector<double>& p) { return reward_ref(p, B, reg); },
                               x, 1e-5);
    std::vector<double> got(as_double(r.grad_better));
    for (float v : r.grad_worse) got.push_back(v);
    BEAVER_EXPECT_CLOSE(got, g, 1e-5, 1e-3);
    size_t acc = 0;
    for (size_t i = 0; i < B; ++i) acc += rb[i] > rw[i];
    EXPECT_DOUBLE_EQ(r.accuracy, double(acc) / B);
  }
}

TEST(RewardLoss, ExtremeScoresStayFinite) {
  const std::vector<float> rb{-200.0f}, rw{200.0f};
  const RewardLoss r = reward_loss(rb, rw, 0.0);
  EXPECT_NEAR(r.loss, 400.0, 1e-9);
  EXPECT_NEAR(r.grad_better[0], -1.0, 1e-12);
  EXPECT_NEAR(r.grad_worse[0], 1.0, 1e-12);
}

TEST(RewardLoss, BadArguments) {
  const std::vector<float> a{1, 2}, b{1};
  expect_error_contains([&] { reward_loss(a, b); }, "r_better has 2 scores but r_worse has 1");
  expect_error_contains([&] { reward_loss({}, {}); }, "empty batch");
  const std::vector<float> n{1.0f, NAN};
  expect_error_contains([&] { reward_loss(a, n); }, "r_worse[1] is not finite");
  expect_error_contains([] { parse_score_loss_type("pairwise"); }, "unknown value 'pairwise'");
  EXPECT_EQ(parse_score_loss_type("token-wise"), ScoreLossType::TokenWise);
}

double cost_ref(const std::vector<double>& x, const std::vector<uint8_t>& ss,
                const std::vector<uint8_t>& su, size_t B, double reg) {
  double l = 0, sq = 0;
  for (size_t i = 0; i < B; ++i) {
    const double s = x[i], u = x[B + i];
    const double sign_s = ss[i] ? -1.0 : 1.0, sign_u = su[i] ? -1.0 : 1.0;
    l += nls(u - s) + nls(sign_s * s) + nls(sign_u * u);
    sq += s * s + u * u;
  }
  return l / double(B) + reg * sq / double(2 * B);
}

TEST(CostLoss, HandExample) {
  // Pair 0: safer safe (c=-1), unsafer unsafe (c=2). Pair 1: both unsafe, c = 0.5 / 0.25.
  const std::vector<float> cs{-1.0f, 0.5f}, cu{2.0f, 0.25f};
  const std::vector<uint8_t> ss{1, 0}, su{0, 0};
  const CostLoss r = cost_loss(cs, cu, ss, su, 0.001);
  const double want_rank = (nls(3.0) + nls(-0.25)) / 2;
  const double want_sign = (nls(1.0) + nls(2.0) + nls(0.5) + nls(0.25)) / 2;
  const double want_l2 = 0.001 * (1 + 4 + 0.25 + 0.0625) / 4;
  EXPECT_NEAR(r.ranking, want_rank, 1e-12);
  EXPECT_NEAR(r.sign, want_sign, 1e-12);
  EXPECT_NEAR(r.l2, want_l2, 1e-15);
  EXPECT_NEAR(r.loss, want_rank + want_sign + want_l2, 1e-12);
  EXPECT_DOUBLE_EQ(r.accuracy, 0.5);
  EXPECT_DOUBLE_EQ(r.sign_accuracy, 1.0);  // -1 safe, 2 / 0.5 / 0.25 unsafe: all match
  EXPECT_TRUE(r.inconsistent_pairs.empty());
  EXPECT_DOUBLE_EQ(r.safer_mean, -0.25);
  EXPECT_DOUBLE_EQ(r.unsafer_mean, 1.125);
}

TEST(CostLoss, MatchesReferenceAndFiniteDifferences) {
  const size_t B = 8;
  const auto cs = random_vec(B, 21, -3, 3), cu = random_vec(B, 22, -3, 3);
  const std::vector<uint8_t> ss{1, 1, 0, 0, 1, 0, 1, 1}, su{0, 1, 0, 1, 0, 0, 1, 0};
  for (double reg : {0.0, 0.001, 0.3}) {
    const CostLoss r = cost_loss(cs, cu, ss, su, reg);
    std::vector<double> x(as_double(cs));
    for (float v : cu) x.push_back(v);
    EXPECT_NEAR(r.loss, cost_ref(x, ss, su, B, reg), 1e-12);
    const auto g = finite_diff(
        [&](const std::vector<double>& p) { return cost_ref(p, ss, su, B, reg); }, x, 1e-5);
    std::vector<double> got(as_double(r.grad_safer));
    for (float v : r.grad_unsafer) got.push_back(v);
    BEAVER_EXPECT_CLOSE(got, g, 1e-5, 1e-3);
  }
}

TEST(CostLoss, SignAccuracyAndInconsistentPairs) {
  // Pairs 1-3: safer labelled unsafe while unsafer is labelled safe → inconsistent.
  const std::vector<float> cs{-1.0f, 0.0f, 3.0f, -2.0f}, cu{1.0f, -1.0f, -0.5f, 4.0f};
  const std::vector<uint8_t> ss{1, 0, 0, 0}, su{0, 1, 1, 1};
  const CostLoss r = cost_loss(cs, cu, ss, su);
  EXPECT_EQ(r.inconsistent_pairs, (std::vector<int64_t>{1, 2, 3}));
  // Matches: (-1 safe ✓, 1 unsafe ✓), (0 reads safe but labelled unsafe ✗, -1 safe ✓),
  // (3 unsafe ✓, -0.5 safe ✓), (-2 safe but labelled unsafe ✗, 4 unsafe but labelled safe ✗).
  EXPECT_DOUBLE_EQ(r.sign_accuracy, 5.0 / 8.0);
  EXPECT_DOUBLE_EQ(r.accuracy, 0.5);
}

TEST(CostLoss, BadLabels) {
  const std::vector<float> c{1, 2};
  const std::vector<uint8_t> ok{0, 1}, bad{0, 2}, short_{1};
  expect_error_contains([&] { cost_loss(c, c, ok, bad); }, "is_unsafer_safe[1] = 2");
  expect_error_contains([&] { cost_loss(c, c, short_, ok); }, "is_safer_safe has 1 labels");
}

// ---- Token-wise ---------------------------------------------------------------------------
struct TokenFixture {
  int64_t B = 3, L = 8;
  std::vector<float> sa, sb;
  std::vector<int32_t> ia, ib;
  std::vector<int64_t> ea{4, 7, 2}, eb{6, 3, 5};
  std::vector<int64_t> div{2, 0, 1};  // first differing position per pair
  TokenFixture() : sa(random_vec(24, 31, -2, 2)), sb(random_vec(24, 32, -2, 2)) {
    for (int64_t i = 0; i < B; ++i)
      for (int64_t t = 0; t < L; ++t) {
        ia.push_back(int32_t(100 + t));
        ib.push_back(int32_t(t < div[size_t(i)] ? 100 + t : 200 + t));
      }
  }
  TokenPairBatch batch() const { return {B, L, sa, sb, ia, ib, ea, eb}; }
  int64_t end(int64_t i) const { return std::max(ea[size_t(i)], eb[size_t(i)]); }
};

// x = [scores_a (B·L), scores_b (B·L)].
double reward_tok_ref(const TokenFixture& f, const std::vector<double>& x, double reg) {
  double total = 0;
  const size_t off = size_t(f.B * f.L);
  for (int64_t i = 0; i < f.B; ++i) {
    double l = 0, sq = 0;
    int64_t n = 0;
    for (int64_t t = f.div[size_t(i)]; t <= f.end(i); ++t, ++n) {
      // Past its own end a sequence enters with its end score.
      const double a = x[size_t(i * f.L + std::min(t, f.ea[size_t(i)]))],
                   b = x[off + size_t(i * f.L + std::min(t, f.eb[size_t(i)]))];
      l += nls(a - b);
      sq += a * a + b * b;
    }
    total += l / double(n) + reg * sq / double(2 * n);
  }
  return total / double(f.B);
}

TEST(RewardLossTokenwise, MatchesReferenceAndFiniteDifferences) {
  const TokenFixture f;
  const RewardLoss r = reward_loss_tokenwise(f.batch(), 0.01);
  std::vector<double> x(as_double(f.sa));
  for (float v : f.sb) x.push_back(v);
  EXPECT_NEAR(r.loss, reward_tok_ref(f, x, 0.01), 1e-12);
  const auto g = finite_diff([&](const std::vector<double>& p) { return reward_tok_ref(f, p, 0.01); },
                             x, 1e-5);
  std::vector<double> got(as_double(r.grad_better));
  for (float v : r.grad_worse) got.push_back(v);
  BEAVER_EXPECT_CLOSE(got, g, 1e-5, 1e-3);
  // Outside the window (before the divergence, after the later end) the gradient is exactly 0.
  EXPECT_EQ(r.grad_better[0], 0.0f);
  EXPECT_EQ(r.grad_better[1], 0.0f);
  EXPECT_NE(r.grad_better[2], 0.0f);
  EXPECT_EQ(r.grad_worse[7], 0.0f);
  EXPECT_NE(r.grad_worse[6], 0.0f);
  // Pair 0: a ends at 4, b at 6: a's padding slots 5 and 6 carry no score of their own (its
  // end score stands in for them), so changing them changes nothing.
  EXPECT_EQ(r.grad_better[5], 0.0f);
  EXPECT_EQ(r.grad_better[6], 0.0f);
  TokenFixture g2;
  g2.sa[5] += 3.0f;
  g2.sa[6] -= 3.0f;
  EXPECT_EQ(reward_loss_tokenwise(g2.batch(), 0.01).loss, r.loss);
  // Accuracy uses the end scores.
  size_t acc = 0;
  for (int64_t i = 0; i < f.B; ++i)
    acc += f.sa[size_t(i * f.L + f.ea[size_t(i)])] > f.sb[size_t(i * f.L + f.eb[size_t(i)])];
  EXPECT_DOUBLE_EQ(r.accuracy, double(acc) / 3.0);
}

double cost_tok_ref(const TokenFixture& f, const std::vector<uint8_t>& ss,
                    const std::vector<uint8_t>& su, const std::vector<double>& x, double reg) {
  double total = 0;
  const size_t off = size_t(f.B * f.L);
  for (int64_t i = 0; i < f.B; ++i) {
    const double gs = ss[size_t(i)] ? -1 : 1, gu = su[size_t(i)] ? -1 : 1;
    double lr = 0, ls = 0, lu = 0, sq = 0;
    int64_t n = 0;
    for (int64_t t = f.div[size_t(i)]; t <= f.end(i); ++t, ++n) {
      const double s = x[size_t(i * f.L + std::min(t, f.ea[size_t(i)]))],
                   u = x[off + size_t(i * f.L + std::min(t, f.eb[size_t(i)]))];
      lr += nls(u - s);
      ls += nls(gs * s);
      lu += nls(gu * u);
      sq += s * s + u * u;
    }
    total += (lr + ls + lu) / double(n) + reg * sq / double(2 * n);
  }
  return total / double(f.B);
}

TEST(CostLossTokenwise, MatchesReferenceAndFiniteDifferences) {
  const TokenFixture f;
  const std::vector<uint8_t> ss{1, 0, 1}, su{0, 0, 1};
  const CostLoss r = cost_loss_tokenwise(f.batch(), ss, su, 0.02);
  std::vector<double> x(as_double(f.sa));
  for (float v : f.sb) x.push_back(v);
  EXPECT_NEAR(r.loss, cost_tok_ref(f, ss, su, x, 0.02), 1e-12);
  const auto g = finite_diff(
      [&](const std::vector<double>& p) { return cost_tok_ref(f, ss, su, p, 0.02); }, x, 1e-5);
  std::vector<double> got(as_double(r.grad_safer));
  for (float v : r.grad_unsafer) got.push_back(v);
  BEAVER_EXPECT_CLOSE(got, g, 1e-5, 1e-3);
}

TEST(TokenwiseLoss, RejectsIdenticalAndLateDivergence) {
  TokenFixture f;
  // Pair 1 identical.
  for (int64_t t = 0; t < f.L; ++t) f.ib[size_t(f.L + t)] = f.ia[size_t(f.L + t)];
  expect_error_contains([&] { reward_loss_tokenwise(f.batch()); },
                        "pair 1: the two sequences are identical");
  TokenFixture g;
  // Pair 2 differs only at position 7, past max(end) = 5.
  for (int64_t t = 0; t < g.L; ++t)
    g.ib[size_t(2 * g.L + t)] = t == 7 ? 999 : g.ia[size_t(2 * g.L + t)];
  expect_error_contains([&] { reward_loss_tokenwise(g.batch()); },
                        "pair 2: first differing token 7 lies past the end index 5");
  TokenFixture h;
  h.ea[0] = 8;
  expect_error_contains([&] { reward_loss_tokenwise(h.batch()); }, "pair 0: end index 8 outside");
}

TEST(LastValidIndex, RightAndLeftPadding) {
  const std::vector<uint8_t> m{1, 1, 1, 0, 0,  //
                               0, 0, 1, 1, 1,  //
                               1, 0, 0, 0, 0};
  EXPECT_EQ(last_valid_index(m, 3, 5), (std::vector<int64_t>{2, 4, 0}));
  const std::vector<uint8_t> empty{1, 0, 0, 0};
  expect_error_contains([&] { last_valid_index(empty, 2, 2); }, "row 1 has no valid position");
}

}  // namespace
}  // namespace beaver::train
