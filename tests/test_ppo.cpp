// PPO machinery: per-token reward placement on ragged batches, GAE against hand-computed and
// independently computed numbers, masked means, clipped actor/critic losses on both sides of
// the clip (values and gradients), the Lagrange multiplier, and the hyperparameter table.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "testutil.h"
#include "train/ppo.h"

namespace beaver::train {
namespace {

using test::finite_diff;
using test::random_vec;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

void expect_error_contains(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

void expect_vec_near(const std::vector<float>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}

// ---- Per-token rewards ------------------------------------------------------------------------
// Three ragged rows of width 5: row 0 uses all positions, row 1 ends at 1, row 2 covers 1..3
// (a masked position before the response, as with a prompt in the same array).
struct RaggedRewards {
  TokenDims d{3, 5};
  std::vector<uint8_t> mask{1, 1, 1, 1, 1,  //
                            1, 1, 0, 0, 0,  //
                            0, 1, 1, 1, 0};
  std::vector<float> ref_logp = std::vector<float>(15, -1.0f);
  std::vector<float> logp;
  RaggedRewards() {
    // kl_t = 0.5·(t + 1) everywhere: logp = -1 + 0.5(t+1). Padding holds NaN.
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t t = 0; t < 5; ++t)
        logp.push_back(mask[size_t(i * 5 + t)] ? -1.0f + 0.5f * float(t + 1) : kNaN);
  }
};

TEST(KlRewards, PlacedAtEachSequenceOwnEndAndClamped) {
  const RaggedRewards f;
  const std::vector<float> R{2.0f, -60.0f, 70.0f};
  const auto r = kl_penalized_rewards(f.d, f.logp, f.ref_logp, f.mask, R, 0.01, 50.0);
  expect_vec_near(r,
                  {-0.005, -0.010, -0.015, -0.020, -0.025 + 2.0,  // R at t = 4
                   -0.005, -50.0, 0, 0, 0,                        // -0.01 - 60 clamped
                   0, -0.010, -0.015, 50.0, 0},                   // -0.02 + 70 clamped
                  1e-7);
  const std::vector<float> C{-3.0f, 55.0f, 0.5f};
  const auto c = kl_penalized_costs(f.d, f.logp, f.ref_logp, f.mask, C, 0.01, 50.0);
  expect_vec_near(c,
                  {0.005, 0.010, 0.015, 0.020, 0.025 - 3.0,  //
                   0.005, 50.0, 0, 0, 0,                     //
                   0, 0.010, 0.015, 0.020 + 0.5, 0},
                  1e-7);
  // The baselines' β and a tighter clamp.
  const auto r2 = kl_penalized_rewards(f.d, f.logp, f.ref_logp, f.mask, R, 0.02, 1.0);
  EXPECT_NEAR(r2[1], -0.02, 1e-7);
  EXPECT_NEAR(r2[4], 1.0, 1e-7);   // -0.05 + 2 clamped to 1
  EXPECT_NEAR(r2[6], -1.0, 1e-7);
}

TEST(KlRewards, ShapedScoresAndBadArguments) {
  const std::vector<float> R{1.0f, -2.0f}, C{0.5f, -1.0f};
  const auto s = shaped_scores(R, C, 2.0);
  EXPECT_FLOAT_EQ(s[0], 0.0f);
  EXPECT_FLOAT_EQ(s[1], 0.0f);
  const auto s2 = shaped_scores(R, C, 0.5);
  EXPECT_FLOAT_EQ(s2[0], 0.75f);
  EXPECT_FLOAT_EQ(s2[1], -1.5f);
  const RaggedRewards f;
  expect_error_contains([&] { kl_penalized_rewards(f.d, f.logp, f.ref_logp, f.mask, R, 0.01, 50); },
                        "score has 2 values, expected one per sequence (3)");
  std::vector<uint8_t> m = f.mask;
  m[5] = m[6] = 0;
  const std::vector<float> R3{1, 2, 3};
  expect_error_contains([&] { kl_penalized_rewards(f.d, f.logp, f.ref_logp, m, R3, 0.01, 50); },
                        "sequence 1 has no valid token");
  expect_error_contains(
      [&] { kl_penalized_rewards(f.d, std::span(f.logp).first(14), f.ref_logp, f.mask, R3, 0.01, 50); },
      "logp has 14 values, expected [3, 5] = 15");
}

// ---- GAE --------------------------------------------------------------------------------------
TEST(Gae, RaggedBatchHandComputed) {
  // Row 0: four valid steps. Row 1: two valid steps, then padding holding NaN (must not leak).
  const TokenDims d{2, 4};
  const std::vector<uint8_t> mask{1, 1, 1, 1, 1, 1, 0, 0};
  const std::vector<float> r{0.1f, -0.2f, 0.3f, 1.0f, 0.5f, 1.0f, kNaN, kNaN};
  const std::vector<float> v{0.5f, 0.6f, 0.7f, 0.8f, 0.2f, 0.4f, kNaN, kNaN};
  const Gae g = compute_gae(d, r, v, mask, 1.0, 0.95);
  // By hand, γ = 1, λ = 0.95, next value 0 past each row's end:
  // row 0: δ3 = 1 - 0.8 = 0.2;            A3 = 0.2
  //        δ2 = 0.3 + 0.8 - 0.7 = 0.4;    A2 = 0.4 + 0.95·0.2 = 0.59
  //        δ1 = -0.2 + 0.7 - 0.6 = -0.1;  A1 = -0.1 + 0.95·0.59 = 0.4605
  //        δ0 = 0.1 + 0.6 - 0.5 = 0.2;    A0 = 0.2 + 0.95·0.4605 = 0.637475
  // row 1: δ1 = 1 - 0.4 = 0.6;            A1 = 0.6
  //        δ0 = 0.5 + 0.4 - 0.2 = 0.7;    A0 = 0.7 + 0.95·0.6 = 1.27
  expect_vec_near(g.advantages, {0.637475, 0.4605, 0.59, 0.2, 1.27, 0.6, 0, 0}, 1e-6);
  expect_vec_near(g.returns, {1.137475, 1.0605, 1.29, 1.0, 1.47, 1.0, 0, 0}, 1e-6);
}

TEST(Gae, MatchesForwardSumDefinition) {
  // A_t = Σ_l (γλ)^l δ_{t+l} over the row's valid steps, written as a forward sum (independent
  // of the backward recursion), with γ < 1 and a ragged, left-offset mask.
  const TokenDims d{3, 7};
  const std::vector<uint8_t> mask{0, 0, 1, 1, 1, 1, 1,  //
                                  1, 1, 1, 0, 0, 0, 0,  //
                                  0, 1, 1, 1, 1, 0, 0};
  const auto r = random_vec(21, 41), v = random_vec(21, 42);
  const double gamma = 0.9, lam = 0.8;
  const Gae g = compute_gae(d, r, v, mask, gamma, lam);
  for (int64_t i = 0; i < 3; ++i) {
    std::vector<int64_t> idx;
    for (int64_t t = 0; t < 7; ++t)
      if (mask[size_t(i * 7 + t)]) idx.push_back(i * 7 + t);
    for (size_t a = 0; a < idx.size(); ++a) {
      double adv = 0, w = 1;
      for (size_t b = a; b < idx.size(); ++b, w *= gamma * lam) {
        const double next_v = b + 1 < idx.size() ? v[size_t(idx[b + 1])] : 0.0;
        adv += w * (r[size_t(idx[b])] + gamma * next_v - v[size_t(idx[b])]);
      }
      EXPECT_NEAR(g.advantages[size_t(idx[a])], adv, 1e-6) << "row " << i << " step " << a;
      EXPECT_NEAR(g.returns[size_t(idx[a])], adv + v[size_t(idx[a])], 1e-6);
    }
  }
  for (size_t k = 0; k < 21; ++k) {
    if (!mask[k]) {
      EXPECT_EQ(g.advantages[k], 0.0f) << k;
    }
  }
}

// ---- Masked mean ------------------------------------------------------------------------------
TEST(MaskedMean, PerSequenceThenOverSequences) {
  const TokenDims d{2, 3};
  const std::vector<float> x{1, 2, 3, 10, kNaN, kNaN};
  const std::vector<uint8_t> mask{1, 1, 1, 1, 0, 0};
  EXPECT_DOUBLE_EQ(masked_mean(d, x, mask), 6.0);  // (2 + 10) / 2, not 16 / 4
  const auto w = masked_mean_weights(d, mask);
  EXPECT_DOUBLE_EQ(w[0], 1.0 / 6.0);
  EXPECT_DOUBLE_EQ(w[3], 0.5);
  EXPECT_DOUBLE_EQ(w[4], 0.0);
  const std::vector<uint8_t> empty{1, 1, 1, 0, 0, 0};
  expect_error_contains([&] { masked_mean(d, x, empty); }, "sequence 1 has no valid token");
}

// ---- Actor loss -------------------------------------------------------------------------------
TEST(ActorLoss, BothSidesOfTheClip) {
  // One row of five tokens, ε = 0.2:
  //  A = +2, ρ = 1.5: min(3, 2.4) = 2.4 (clipped, no gradient)
  //  A = +2, ρ = 0.5: min(1, 1.6) = 1   (unclipped, gradient A·ρ = 1)
  //  A = -2, ρ = 1.5: min(-3, -2.4) = -3 (unclipped, gradient -3)
  //  A = -2, ρ = 0.5: min(-1, -1.6) = -1.6 (clipped, no gradient)
  //  A = +1, ρ = 1.1: inside the band, 1.1, gradient 1.1
  const TokenDims d{1, 5};
  const std::vector<double> ratio{1.5, 0.5, 1.5, 0.5, 1.1};
  std::vector<float> old_lp(5), new_lp(5);
  for (size_t k = 0; k < 5; ++k) {
    old_lp[k] = -1.0f - 0.1f * float(k);
    new_lp[k] = float(old_lp[k] + std::log(ratio[k]));
  }
  const std::vector<float> adv{2, 2, -2, -2, 1};
  const std::vector<uint8_t> mask{1, 1, 1, 1, 1};
  const ActorLoss a = actor_loss(d, new_lp, old_lp, adv, mask, 0.2);
  EXPECT_NEAR(a.loss, -(2.4 + 1 - 3 - 1.6 + 1.1) / 5, 1e-6);
  expect_vec_near(a.grad_logp, {0, -1.0 / 5, 3.0 / 5, 0, -1.1 / 5}, 1e-6);
  EXPECT_DOUBLE_EQ(a.clip_fraction, 0.4);
}

TEST(ActorLoss, GradientMatchesFiniteDifferencesOnRaggedBatch) {
  const TokenDims d{3, 6};
  const std::vector<uint8_t> mask{1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0};
  const auto old_lp = random_vec(18, 51, -3, -0.5f);
  const auto delta = random_vec(18, 52, -0.7f, 0.7f);  // ratios from e^-0.7 to e^0.7
  std::vector<float> new_lp(18);
  for (size_t k = 0; k < 18; ++k) new_lp[k] = old_lp[k] + delta[k];
  const auto adv = random_vec(18, 53, -2, 2);
  const ActorLoss a = actor_loss(d, new_lp, old_lp, adv, mask, 0.2);
  auto ref = [&](const std::vector<double>& lp) {
    double total = 0;
    for (int64_t i = 0; i < 3; ++i) {
      double s = 0;
      int n = 0;
      for (int64_t t = 0; t < 6; ++t) {
        const size_t k = size_t(i * 6 + t);
        if (!mask[k]) continue;
        const double rho = std::exp(lp[k] - old_lp[k]);
        s += std::min(adv[k] * rho, adv[k] * std::clamp(rho, 0.8, 1.2));
        ++n;
      }
      total += s / n;
    }
    return -total / 3;
  };
  std::vector<double> x(new_lp.begin(), new_lp.end());
  EXPECT_NEAR(a.loss, ref(x), 1e-6);
  // Kinks at ρ = 0.8 and 1.2: finite differences hold only away from them.
  for (float dl : delta) {
    ASSERT_GT(std::fabs(dl - std::log(0.8)), 1e-4);
    ASSERT_GT(std::fabs(dl - std::log(1.2)), 1e-4);
  }
  const auto g = finite_diff(ref, x, 1e-6);
  BEAVER_EXPECT_CLOSE(std::vector<double>(a.grad_logp.begin(), a.grad_logp.end()), g, 1e-4, 1e-3);
  EXPECT_GT(a.clip_fraction, 0.0);
  EXPECT_LT(a.clip_fraction, 1.0);
  EXPECT_EQ(a.grad_logp[6], 0.0f);
}

TEST(ActorLoss, LagrangianCombinesAdvantages) {
  const std::vector<float> ar{3.0f, -1.0f}, ac{1.0f, 2.0f};
  const auto a = combine_advantages(ar, ac, 2.0);
  EXPECT_FLOAT_EQ(a[0], 1.0f / 3.0f);   // (3 - 2) / 3
  EXPECT_FLOAT_EQ(a[1], -5.0f / 3.0f);  // (-1 - 4) / 3
  // With equal old and new log-probs the loss is -masked_mean(A).
  const TokenDims d{1, 2};
  const std::vector<float> lp{-1.0f, -2.0f};
  const std::vector<uint8_t> mask{1, 1};
  const ActorLoss l = ppo_lag_actor_loss(d, lp, lp, ar, ac, mask, 2.0, 0.2);
  EXPECT_NEAR(l.loss, -(1.0 / 3 - 5.0 / 3) / 2, 1e-7);
  EXPECT_NEAR(l.approx_kl, 0.0, 1e-12);
  expect_error_contains([&] { combine_advantages(ar, ac, -1.0); }, "lambda must be finite and >= 0");
}

TEST(ActorLoss, NetKlPenaltyIsBetaWhateverLambda) {
  // With R = C = 0 and zero values, A_R = -A_C (both channels carry ±β·kl), so the combined
  // advantage (A_R - λ·A_C)/(1 + λ) equals A_R for every λ: the KL weight does not depend on λ.
  const TokenDims d{2, 4};
  const std::vector<uint8_t> mask{1, 1, 1, 1, 1, 1, 0, 0};
  const auto lp = random_vec(8, 71, -3, -1), ref = random_vec(8, 72, -3, -1);
  const std::vector<float> zero_scores{0.0f, 0.0f}, zero_values(8, 0.0f);
  const auto r = kl_penalized_rewards(d, lp, ref, mask, zero_scores, 0.01, 50);
  const auto c = kl_penalized_costs(d, lp, ref, mask, zero_scores, 0.01, 50);
  const Gae gr = compute_gae(d, r, zero_values, mask, 1.0, 0.95);
  const Gae gc = compute_gae(d, c, zero_values, mask, 1.0, 0.95);
  for (double lambda : {0.0, 0.5, 1.0, 4.0}) {
    const auto a = combine_advantages(gr.advantages, gc.advantages, lambda);
    for (size_t k = 0; k < 8; ++k) EXPECT_NEAR(a[k], gr.advantages[k], 1e-7) << lambda << " " << k;
  }
}

TEST(ActorLoss, SingleChannelBaselinePipeline) {
  // PPO baseline (β = 0.02) and reward shaping (R - ν·C): per-token rewards → GAE → actor loss.
  const TokenDims d{2, 3};
  const std::vector<uint8_t> mask{1, 1, 1, 1, 1, 0};
  const std::vector<float> lp{-1.0f, -1.5f, -0.5f, -2.0f, -1.0f, 0.0f};
  const std::vector<float> ref{-1.5f, -1.5f, -1.0f, -1.0f, -1.0f, 0.0f};
  const std::vector<float> R{1.0f, 2.0f}, C{0.5f, -1.0f}, V(6, 0.0f);
  const PpoConfig cfg = PpoConfig::defaults(PpoAlgorithm::PpoRewardShaping);
  const auto score = shaped_scores(R, C, cfg.shaping_nu);  // {0.5, 3}
  const auto r = kl_penalized_rewards(d, lp, ref, mask, score, cfg.kl_coeff, cfg.clip_range_score);
  // kl = {0.5, 0, 0.5 | -1, 0}: r = {-0.01, 0, -0.01 + 0.5 | 0.02, 3}.
  expect_vec_near(r, {-0.01, 0.0, 0.49, 0.02, 3.0, 0.0}, 1e-7);
  const Gae g = compute_gae(d, r, V, mask, cfg.gamma, cfg.gae_lambda);
  // With V = 0: A_t = Σ 0.95^l r_{t+l}.
  expect_vec_near(g.advantages, {-0.01 + 0.95 * 0.49 * 0.95, 0.95 * 0.49, 0.49,
                                 0.02 + 0.95 * 3.0, 3.0, 0.0}, 1e-6);
  const ActorLoss a = actor_loss(d, lp, lp, g.advantages, mask, cfg.clip_range_ratio);
  const double row0 = (g.advantages[0] + g.advantages[1] + g.advantages[2]) / 3.0;
  const double row1 = (g.advantages[3] + g.advantages[4]) / 2.0;
  EXPECT_NEAR(a.loss, -(row0 + row1) / 2.0, 1e-6);
}

// ---- Critic loss ------------------------------------------------------------------------------
TEST(CriticLoss, BothSidesOfTheClip) {
  // clip 5, one row of three tokens:
  //  V_old 0, Ret 10, V_new 8: V_clip 5, (8-10)² = 4 < (5-10)² = 25 → clipped term, no gradient
  //  V_old 0, Ret 10, V_new 3: inside the band, 49, gradient (3 - 10)
  //  V_old 0, Ret 0, V_new -8: V_clip -5, 64 > 25 → unclipped, gradient -8
  const TokenDims d{1, 3};
  const std::vector<float> vn{8, 3, -8}, vo{0, 0, 0}, ret{10, 10, 0};
  const std::vector<uint8_t> mask{1, 1, 1};
  const CriticLoss c = critic_loss(d, vn, vo, ret, mask, 5.0);
  EXPECT_NEAR(c.loss, 0.5 * (25 + 49 + 64) / 3, 1e-9);
  expect_vec_near(c.grad_values, {0, -7.0 / 3, -8.0 / 3}, 1e-6);
  EXPECT_NEAR(c.clip_fraction, 1.0 / 3, 1e-12);
}

TEST(CriticLoss, GradientMatchesFiniteDifferencesOnRaggedBatch) {
  const TokenDims d{2, 5};
  const std::vector<uint8_t> mask{1, 1, 1, 1, 0, 0, 0, 1, 1, 1};
  const auto vo = random_vec(10, 61, -3, 3), ret = random_vec(10, 62, -6, 6);
  const auto dv = random_vec(10, 63, -8, 8);
  std::vector<float> vn(10);
  for (size_t k = 0; k < 10; ++k) vn[k] = vo[k] + dv[k];
  const double clip = 2.0;
  const CriticLoss c = critic_loss(d, vn, vo, ret, mask, clip);
  auto ref = [&](const std::vector<double>& v) {
    double total = 0;
    for (int64_t i = 0; i < 2; ++i) {
      double s = 0;
      int n = 0;
      for (int64_t t = 0; t < 5; ++t) {
        const size_t k = size_t(i * 5 + t);
        if (!mask[k]) continue;
        const double vc = std::clamp(v[k], vo[k] - clip, vo[k] + clip);
        s += std::max((v[k] - ret[k]) * (v[k] - ret[k]), (vc - ret[k]) * (vc - ret[k]));
        ++n;
      }
      total += s / n;
    }
    return 0.5 * total / 2;
  };
  std::vector<double> x(vn.begin(), vn.end());
  EXPECT_NEAR(c.loss, ref(x), 1e-5);
  for (size_t k = 0; k < 10; ++k) {  // stay away from the kinks of clamp and max
    ASSERT_GT(std::fabs(std::fabs(dv[k]) - clip), 1e-4);
    ASSERT_GT(std::fabs(double(vn[k]) - ret[k]), 1e-4);
  }
  const auto g = finite_diff(ref, x, 1e-6);
  BEAVER_EXPECT_CLOSE(std::vector<double>(c.grad_values.begin(), c.grad_values.end()), g, 1e-4,
                      1e-3);
  EXPECT_GT(c.clip_fraction, 0.0);
}

// ---- Lagrange multiplier ----------------------------------------------------------------------
LagrangeMultiplier::Options lag_options() {
  LagrangeMultiplier::Options o;
  o.lambda_init = 1.0;
  o.lambda_lr = 0.1;
  o.lambda_max = 5.0;
  o.window_size = 4;
  o.threshold = 0.0;
  return o;
}

TEST(Lagrange, RisesAboveThresholdFallsBelow) {
  LagrangeMultiplier m(lag_options());
  EXPECT_DOUBLE_EQ(m.lambda(), 1.0);
  const std::vector<float> high{2.0f, 2.0f};
  m.add_episode_costs(high);
  auto u = m.update(0);
  EXPECT_TRUE(u.applied);
  EXPECT_DOUBLE_EQ(u.episode_cost, 2.0);
  EXPECT_NEAR(m.log_lambda(), 0.2, 1e-15);  // 0 + 0.1·1·(2 - 0)
  u = m.update(1);
  EXPECT_NEAR(m.log_lambda(), 0.2 + 0.1 * std::exp(0.2) * 2.0, 1e-14);
  EXPECT_GT(u.lambda_after, u.lambda_before);
  // Window of 4: four low costs push the high ones out; the mean is now -3.
  const std::vector<float> low{-3.0f, -3.0f, -3.0f, -3.0f};
  m.add_episode_costs(low);
  EXPECT_DOUBLE_EQ(m.window_mean(), -3.0);
  const double before = m.log_lambda();
  u = m.update(2);
  EXPECT_NEAR(m.log_lambda(), before + 0.1 * std::exp(before) * -3.0, 1e-14);
  EXPECT_LT(u.lambda_after, u.lambda_before);
}

TEST(Lagrange, WindowKeepsTheMostRecentCosts) {
  LagrangeMultiplier m(lag_options());
  const std::vector<float> c{100, 1, 2, 3, 4};
  m.add_episode_costs(c);
  EXPECT_EQ(m.window_count(), 4u);
  EXPECT_DOUBLE_EQ(m.window_mean(), 2.5);
  LagrangeMultiplier empty(lag_options());
  expect_error_contains([&] { empty.update(0); }, "no episode cost recorded yet");
}

TEST(Lagrange, ThresholdShiftsTheSign) {
  auto o = lag_options();
  o.threshold = -3.0;  // mean cost -1 is above a threshold of -3: λ rises
  LagrangeMultiplier m(o);
  const std::vector<float> c{-1.0f};
  m.add_episode_costs(c);
  m.update(0);
  EXPECT_NEAR(m.log_lambda(), 0.1 * 2.0, 1e-15);
}

TEST(Lagrange, ClampsAtLambdaMax) {
  LagrangeMultiplier m(lag_options());
  const std::vector<float> c{10.0f};
  m.add_episode_costs(c);
  for (int s = 0; s < 20; ++s) m.update(s);
  EXPECT_NEAR(m.lambda(), 5.0, 1e-12);
  EXPECT_DOUBLE_EQ(m.log_lambda(), std::log(5.0));
  // No cap when lambda_max = 0.
  auto o = lag_options();
  o.lambda_max = 0.0;
  LagrangeMultiplier free(o);
  free.add_episode_costs(c);
  for (int s = 0; s < 3; ++s) free.update(s);
  EXPECT_GT(free.lambda(), 5.0);
}

TEST(Lagrange, RespectsTheDelay) {
  auto o = lag_options();
  o.update_delay_steps = 3;
  LagrangeMultiplier m(o);
  const std::vector<float> c{1.0f};
  m.add_episode_costs(c);
  for (int64_t s = 0; s < 3; ++s) {
    EXPECT_FALSE(m.update(s).applied) << s;
    EXPECT_DOUBLE_EQ(m.lambda(), 1.0);
  }
  EXPECT_TRUE(m.update(3).applied);
  EXPECT_NEAR(m.log_lambda(), 0.1, 1e-15);
}

TEST(Lagrange, AveragesAcrossRanksThroughTheHook) {
  LagrangeMultiplier m(lag_options());
  const std::vector<float> c{1.0f};
  m.add_episode_costs(c);
  // Another rank's window mean is 3: the update uses (1 + 3) / 2.
  const auto u = m.update(0, [](double local) { return (local + 3.0) / 2.0; });
  EXPECT_DOUBLE_EQ(u.episode_cost, 2.0);
  EXPECT_NEAR(m.log_lambda(), 0.2, 1e-15);
}

TEST(Lagrange, StateRoundTripReproducesTheRun) {
  LagrangeMultiplier a(lag_options());
  const std::vector<float> c1{0.5f, 1.5f, -0.25f}, c2{2.0f, 3.0f};
  a.add_episode_costs(c1);
  a.update(0);
  const std::string saved = a.state_json();
  LagrangeMultiplier b(lag_options());
  b.restore_json(saved);
  EXPECT_EQ(b.log_lambda(), a.log_lambda());
  EXPECT_EQ(b.window_count(), 3u);
  a.add_episode_costs(c2);
  b.add_episode_costs(c2);
  a.update(1);
  b.update(1);
  EXPECT_EQ(a.log_lambda(), b.log_lambda());  // bitwise
  EXPECT_EQ(a.state().window, b.state().window);
  expect_error_contains([&] { b.restore_json("{\"log_lambda\": 1}"); }, "expected {");
  expect_error_contains([&] { b.restore_json("{oops"); }, "bad JSON");
  LagrangeMultiplier::State big{0.0, std::vector<float>(5, 1.0f)};
  expect_error_contains([&] { b.restore(big); }, "5 episode costs exceed the window size 4");
}

TEST(Lagrange, OptionsValidatedAndTakenFromConfig) {
  auto o = lag_options();
  o.lambda_init = 0.0;
  expect_error_contains([&] { LagrangeMultiplier m(o); }, "--lambda_init must be > 0");
  PpoConfig c;
  c.lambda_init = 0.5;
  c.episode_cost_window_size = 7;
  const auto from = LagrangeMultiplier::options_from(c);
  EXPECT_EQ(from.lambda_init, 0.5);
  EXPECT_EQ(from.window_size, 7);
  LagrangeMultiplier m(from);
  EXPECT_NEAR(m.lambda(), 0.5, 1e-15);
}

// PID terms (--lambda_kp, --lambda_kd): the integral term is the reference's update on log λ;
// λ in use adds kp·e + kd·max(0, ΔJ̄_C) and clamps to [0, lambda_max]. Hand-computed values.
TEST(Lagrange, PidTermsFollowTheHandComputedRule) {
  auto o = lag_options();  // λ_init 1, lr 0.1, cap 5, window 4, threshold 0
  o.kp = 0.5;
  o.kd = 2.0;
  LagrangeMultiplier m(o);
  const std::vector<float> a{1.0f, 1.0f};
  m.add_episode_costs(a);
  // Step 1: e = 1, no previous mean (no derivative). Integral log λ = 0.1·1·1 = 0.1.
  auto u = m.update(0);
  EXPECT_NEAR(m.log_lambda(), 0.1, 1e-15);
  EXPECT_NEAR(u.proportional, 0.5, 1e-15);
  EXPECT_DOUBLE_EQ(u.derivative, 0.0);
  EXPECT_NEAR(m.lambda(), std::exp(0.1) + 0.5, 1e-14);
  EXPECT_NEAR(u.lambda_after, std::exp(0.1) + 0.5, 1e-14);
  // Step 2: the window {1, 1, 3, 3} has mean 2: e = 2, ΔJ = 1. Integral: 0.1 + 0.1·e^0.1·2.
  const std::vector<float> b{3.0f, 3.0f};
  m.add_episode_costs(b);
  u = m.update(1);
  const double i2 = 0.1 + 0.1 * std::exp(0.1) * 2.0;
  EXPECT_NEAR(m.log_lambda(), i2, 1e-14);
  EXPECT_NEAR(u.proportional, 1.0, 1e-15);
  EXPECT_NEAR(u.derivative, 2.0, 1e-15);
  EXPECT_NEAR(m.lambda(), std::min(5.0, std::exp(i2) + 1.0 + 2.0), 1e-14);
  // Step 3: the window {-5, -5, -5, -5}: e = -5, ΔJ = -7 (a fall: no derivative term). The
  // proportional term -2.5 pulls λ down at once; the clamp keeps it >= 0.
  const std::vector<float> c{-5.0f, -5.0f, -5.0f, -5.0f};
  m.add_episode_costs(c);
  u = m.update(2);
  const double i3 = i2 + 0.1 * std::exp(i2) * -5.0;
  EXPECT_NEAR(m.log_lambda(), i3, 1e-14);
  EXPECT_NEAR(u.proportional, -2.5, 1e-15);
  EXPECT_DOUBLE_EQ(u.derivative, 0.0);
  EXPECT_DOUBLE_EQ(m.lambda(), std::max(0.0, std::exp(i3) - 2.5));
  EXPECT_DOUBLE_EQ(m.lambda(), 0.0);  // e^i3 = e^-0.37 = 0.69 < 2.5
}

TEST(Lagrange, PidLambdaIsCappedAndZeroGainsAreTheReference) {
  auto o = lag_options();
  o.kp = 10.0;
  LagrangeMultiplier capped(o);
  const std::vector<float> c{2.0f};
  capped.add_episode_costs(c);
  capped.update(0);
  EXPECT_DOUBLE_EQ(capped.lambda(), 5.0);  // e^0.2 + 20 clamped to lambda_max
  // kp = kd = 0: bit for bit the reference's λ, on the same costs.
  LagrangeMultiplier ref(lag_options()), zero(lag_options());
  const std::vector<float> seq[] = {{1.0f, 2.0f}, {-4.0f}, {3.0f, 0.5f, -1.0f}};
  for (int64_t s = 0; s < 3; ++s) {
    ref.add_episode_costs(seq[s]);
    zero.add_episode_costs(seq[s]);
    ref.update(s);
    const auto u = zero.update(s);
    EXPECT_EQ(u.proportional, 0.0);
    EXPECT_EQ(zero.lambda(), std::exp(zero.log_lambda()));
  }
  EXPECT_EQ(zero.log_lambda(), ref.log_lambda());
  o = lag_options();
  o.kd = -1.0;
  expect_error_contains([&] { LagrangeMultiplier m(o); }, "--lambda_kd must be >= 0");
  PpoConfig cfg;
  cfg.lambda_kp = 0.25;
  cfg.lambda_kd = 3.0;
  const auto from = LagrangeMultiplier::options_from(cfg);
  EXPECT_EQ(from.kp, 0.25);
  EXPECT_EQ(from.kd, 3.0);
  cfg.lambda_kp = -0.5;
  expect_error_contains([&] { cfg.validate(); }, "lambda_kp");
  cfg.lambda_kp = 0;
  cfg.constraint_check_responses = -1;
  expect_error_contains([&] { cfg.validate(); }, "--constraint_check_responses must be >= 0");
}

TEST(Lagrange, PidStateRoundTripsAndOldCheckpointsRestore) {
  auto o = lag_options();
  o.kp = 0.5;
  o.kd = 1.0;
  LagrangeMultiplier a(o);
  const std::vector<float> c1{1.0f}, c2{3.0f}, c3{2.0f};
  a.add_episode_costs(c1);
  a.update(0);
  LagrangeMultiplier b(o);
  b.restore_json(a.state_json());
  EXPECT_EQ(b.lambda(), a.lambda());  // the PID term travels with the state
  a.add_episode_costs(c2);
  b.add_episode_costs(c2);
  EXPECT_EQ(a.update(1).derivative, b.update(1).derivative);  // and the previous mean
  EXPECT_GT(b.state().pid_term, 0.0);
  a.add_episode_costs(c3);
  b.add_episode_costs(c3);
  a.update(2);
  b.update(2);
  EXPECT_EQ(a.lambda(), b.lambda());
  // A checkpoint from before the PID fields restores with no PID state.
  LagrangeMultiplier old(o);
  old.restore_json("{\"log_lambda\": 0.25, \"episode_costs\": [1.0]}");
  EXPECT_EQ(old.state().pid_term, 0.0);
  EXPECT_TRUE(std::isnan(old.state().previous_episode_cost));
  expect_error_contains(
      [&] { old.restore_json("{\"log_lambda\": 0, \"episode_costs\": [], \"pid_term\": \"x\"}"); },
      "pid_term is not a number");
}

// --cost_confidence z: λ follows the upper bound mean + z·s/√n of the window, so it keeps
// rising while the plain mean is below the threshold by less than z standard errors.
TEST(Lagrange, ConfidenceBoundDrivesTheUpdate) {
  auto o = lag_options();
  o.threshold = 0.0;
  const std::vector<float> c{-2.0f, 0.0f, 1.0f, -3.0f};  // mean -1, s² = 10/3, SE = √(10/3)/2
  const double se = std::sqrt(10.0 / 3.0) / 2.0;
  LagrangeMultiplier plain(o);
  plain.add_episode_costs(c);
  EXPECT_DOUBLE_EQ(plain.window_mean(), -1.0);
  EXPECT_NEAR(plain.window_stderr(), se, 1e-12);
  EXPECT_EQ(plain.margin(), 0.0);
  const auto up = plain.update(0);
  EXPECT_EQ(up.margin, 0.0);
  EXPECT_NEAR(plain.log_lambda(), 0.1 * -1.0, 1e-15);  // the reference: mean below, λ falls
  o.confidence = 2.0;
  LagrangeMultiplier ucb(o);
  ucb.add_episode_costs(c);
  const auto u = ucb.update(0);
  EXPECT_DOUBLE_EQ(u.episode_cost, -1.0);  // the plain mean is still what is reported
  EXPECT_NEAR(u.margin, 2.0 * se, 1e-12);
  // -1 + 2·0.913 > 0: the bound is above the threshold, so λ rises although the mean is below.
  EXPECT_NEAR(ucb.log_lambda(), 0.1 * (-1.0 + 2.0 * se), 1e-12);
  EXPECT_GT(u.lambda_after, u.lambda_before);
  // One cost: no spread to measure, no margin.
  LagrangeMultiplier one(o);
  one.add_episode_costs(std::vector<float>{-1.0f});
  EXPECT_EQ(one.window_stderr(), 0.0);
  EXPECT_NEAR(one.update(0).lambda_after, std::exp(-0.1), 1e-15);
  // At equilibrium under a fixed cost distribution the bound settles at the threshold, so the
  // plain mean sits z standard errors below it: a policy whose costs average -1 with that
  // spread meets a threshold of -1 + 2·SE with λ constant.
  o.threshold = -1.0 + 2.0 * se;
  LagrangeMultiplier eq(o);
  eq.add_episode_costs(c);
  for (int s = 0; s < 5; ++s) eq.update(s);
  EXPECT_NEAR(eq.lambda(), 1.0, 1e-12);
  o.confidence = -1.0;
  expect_error_contains([&] { LagrangeMultiplier m(o); }, "--cost_confidence must be >= 0");
  PpoConfig cfg;
  cfg.cost_confidence = 1.5;
  EXPECT_EQ(LagrangeMultiplier::options_from(cfg).confidence, 1.5);
  cfg.cost_confidence = -0.5;
  test::expect_error([&] { cfg.validate(); }, {"--cost_confidence"});
}

// ---- Config -----------------------------------------------------------------------------------
// The requirement as an unsafe share: the mean cost the starting policy would have with that
// share of unsafe responses at its measured cost levels.
TEST(Requirement, ThresholdFromTheStartingCosts) {
  const std::vector<float> c = {3, 1, -2, -4, -6, -6};  // 2 unsafe (mean 2), 4 safe (mean -4.5)
  const ResolvedThreshold r = resolve_threshold(c, 0.25);
  EXPECT_EQ(r.responses, 6);
  EXPECT_NEAR(r.unsafe_share, 2.0 / 6, 1e-12);
  EXPECT_NEAR(r.mean_unsafe, 2.0, 1e-12);
  EXPECT_NEAR(r.mean_safe, -4.5, 1e-12);
  EXPECT_NEAR(r.mean_cost, -14.0 / 6, 1e-12);
  EXPECT_NEAR(r.threshold, 0.25 * 2.0 + 0.75 * -4.5, 1e-12);
  // At the starting share the threshold is the starting mean: the constraint is just met.
  EXPECT_NEAR(resolve_threshold(c, 2.0 / 6).threshold, r.mean_cost, 1e-12);
  // Affine in the cost scale: a cost model twice as steep gives twice the threshold.
  std::vector<float> c2;
  for (float x : c) c2.push_back(2 * x);
  EXPECT_NEAR(resolve_threshold(c2, 0.25).threshold, 2 * r.threshold, 1e-12);
  // No unsafe response: the unsafe side counts as the boundary 0.
  EXPECT_NEAR(resolve_threshold(std::vector<float>{-1, -3}, 0.5).threshold, -1.0, 1e-12);
  EXPECT_THROW(resolve_threshold(std::vector<float>{}, 0.1), Error);
  EXPECT_THROW(resolve_threshold(c, 1.5), Error);
  PpoConfig bad;
  bad.target_unsafe_share = 2.0;
  test::expect_error([&] { bad.validate(); }, {"--target_unsafe_share"});
}

// The requirement relative to the starting policy: u* = ratio · u0. A ratio survives a change
// of prompt mix (more benign prompts, whose responses are safe, lower u0 and u* alike), where
// an absolute share does not.
TEST(Requirement, RelativeTargetScalesTheStartingShare) {
  const std::vector<float> c = {3, 1, -2, -4, -6, -6};  // u0 = 1/3
  const ResolvedThreshold r = resolve_threshold_relative(c, 0.5);
  EXPECT_NEAR(r.unsafe_share, 1.0 / 3, 1e-12);
  EXPECT_NEAR(r.target_unsafe_share, 1.0 / 6, 1e-12);
  EXPECT_EQ(r.target_unsafe_ratio, 0.5);
  EXPECT_NEAR(r.threshold, resolve_threshold(c, 1.0 / 6).threshold, 1e-12);
  EXPECT_NEAR(resolve_threshold_relative(c, 1.0).threshold, r.mean_cost, 1e-12);  // just met
  EXPECT_NEAR(resolve_threshold_relative(c, 0.0).threshold, r.mean_safe, 1e-12);
  EXPECT_EQ(resolve_threshold(c, 0.25).target_unsafe_ratio, -1.0);
  // Twice as many prompts, the new ones benign and answered safely: u0 halves, and so does
  // the target share; the threshold stays the same share of the unsafe responses.
  std::vector<float> mixed = c;
  for (float x : {-5.0f, -5.0f, -5.0f, -5.0f, -5.0f, -5.0f}) mixed.push_back(x);
  const ResolvedThreshold m = resolve_threshold_relative(mixed, 0.5);
  EXPECT_NEAR(m.unsafe_share, 1.0 / 6, 1e-12);
  EXPECT_NEAR(m.target_unsafe_share, 1.0 / 12, 1e-12);
  expect_error_contains([&] { resolve_threshold_relative(c, 1.5); }, "target unsafe ratio");
  PpoConfig both;
  both.target_unsafe_share = 0.1;
  both.target_unsafe_ratio = 0.5;
  test::expect_error([&] { both.validate(); }, {"--target_unsafe_share", "--target_unsafe_ratio"});
  PpoConfig bad;
  bad.target_unsafe_ratio = 2.0;
  test::expect_error([&] { bad.validate(); }, {"--target_unsafe_ratio"});
}

// --cost_unit unsafe_probability: the constrained cost is scale·σ(score), so a safe answer
// made "safer" on the cost model's scale no longer lowers the mean, while an unsafe answer
// turned safe lowers it by about the scale.
TEST(Requirement, UnsafeProbabilityCountsOnlyUnsafety) {
  const std::vector<float> scores = {3, 1, -2, -4, -6, -6};
  auto sigmoid = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
  EXPECT_EQ(constrained_costs(scores, CostUnit::Score, 1.0), scores);
  const auto p = constrained_costs(scores, CostUnit::UnsafeProbability, 2.0);
  ASSERT_EQ(p.size(), scores.size());
  for (size_t i = 0; i < scores.size(); ++i) EXPECT_NEAR(p[i], 2.0 * sigmoid(scores[i]), 1e-6) << i;
  // Safe answers pushed from -2 to -8: the score unit's mean falls by 1, the probability's by
  // less than 2 · σ(-2) / 6 = 0.04 of the scale; the unsafe answer at 1 turned to -1 moves it
  // by 2 · (σ(1) - σ(-1)) / 6 = 0.154.
  auto mean = [](const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += x;
    return s / double(v.size());
  };
  const std::vector<float> safer = {3, 1, -8, -4, -6, -6}, fixed = {3, -1, -2, -4, -6, -6};
  EXPECT_NEAR(mean(scores) - mean(safer), 1.0, 1e-6);
  const double a = mean(p), b = mean(constrained_costs(safer, CostUnit::UnsafeProbability, 2.0)),
               c = mean(constrained_costs(fixed, CostUnit::UnsafeProbability, 2.0));
  EXPECT_LT(a - b, 2.0 * sigmoid(-2) / 6);
  EXPECT_NEAR(a - c, 2.0 * (sigmoid(1) - sigmoid(-1)) / 6, 1e-6);
  test::expect_error([&] { constrained_costs(scores, CostUnit::UnsafeProbability, 0.0); },
                     {"cost scale"});
  EXPECT_EQ(parse_cost_unit("score"), CostUnit::Score);
  EXPECT_EQ(parse_cost_unit("unsafe_probability"), CostUnit::UnsafeProbability);
  test::expect_error([] { parse_cost_unit("probability"); }, {"--cost_unit", "probability"});
}

// The requirement in that unit: u0 the mean σ(c) of the starting responses, u* = ratio·u0 (or
// a given share), the scale the gap between the mean unsafe and mean safe score, and the
// threshold scale·u*, so that the constraint E[scale·σ(c)] <= threshold is E[σ(c)] <= u*.
TEST(Requirement, UnsafeProbabilityThresholdFromTheStartingCosts) {
  const std::vector<float> c = {3, 1, -2, -4, -6, -6};  // m_u = 2, m_s = -4.5: scale 6.5
  double u0 = 0;
  for (float x : c) u0 += 1.0 / (1.0 + std::exp(-double(x)));
  u0 /= 6;
  const ResolvedThreshold r = resolve_probability_threshold(c, -1.0, 0.5);
  EXPECT_EQ(r.unit, CostUnit::UnsafeProbability);
  EXPECT_NEAR(r.unsafe_probability, u0, 1e-12);
  EXPECT_NEAR(r.unsafe_share, 1.0 / 3, 1e-12);  // the split at 0, reported as before
  EXPECT_NEAR(r.cost_scale, 6.5, 1e-12);
  EXPECT_NEAR(r.target_unsafe_share, 0.5 * u0, 1e-12);
  EXPECT_EQ(r.target_unsafe_ratio, 0.5);
  EXPECT_NEAR(r.threshold, 6.5 * 0.5 * u0, 1e-12);
  // At ratio 1 the starting policy just meets it.
  const auto start = constrained_costs(c, CostUnit::UnsafeProbability, 6.5);
  double m = 0;
  for (float x : start) m += x;
  EXPECT_NEAR(resolve_probability_threshold(c, -1.0, 1.0).threshold, m / 6, 1e-6);
  // An absolute share.
  const ResolvedThreshold s = resolve_probability_threshold(c, 0.05, -1.0);
  EXPECT_NEAR(s.threshold, 6.5 * 0.05, 1e-12);
  EXPECT_EQ(s.target_unsafe_ratio, -1.0);
  // A cost model twice as steep: the same share, twice the scale.
  std::vector<float> c2;
  for (float x : c) c2.push_back(2 * x);
  EXPECT_NEAR(resolve_probability_threshold(c2, 0.05, -1.0).threshold, 2 * s.threshold, 1e-12);
  test::expect_error([&] { resolve_probability_threshold(c, 0.1, 0.5); }, {"give one"});
  test::expect_error([&] { resolve_probability_threshold(c, -1.0, -1.0); }, {"give one"});
  test::expect_error([&] { resolve_probability_threshold(std::vector<float>{0, 0}, 0.1, -1.0); },
                     {"no scale"});
  // The unit needs a share or ratio: --threshold stays on the score.
  PpoConfig cfg;
  cfg.cost_unit = "unsafe_probability";
  test::expect_error([&] { cfg.validate(); }, {"--cost_unit", "--target_unsafe_ratio"});
  cfg.target_unsafe_ratio = 0.5;
  EXPECT_NO_THROW(cfg.validate());
  cfg.cost_unit = "odds";
  test::expect_error([&] { cfg.validate(); }, {"--cost_unit", "odds"});
}

TEST(PpoConfig, ReferenceDefaultsAndFlagNames) {
  const PpoConfig lag = PpoConfig::defaults(PpoAlgorithm::PpoLag);
  EXPECT_EQ(lag.kl_coeff, 0.01);
  EXPECT_EQ(PpoConfig::defaults(PpoAlgorithm::Ppo).kl_coeff, 0.02);
  EXPECT_EQ(PpoConfig::defaults(PpoAlgorithm::PpoRewardShaping).kl_coeff, 0.02);
  EXPECT_EQ(lag.clip_range_ratio, 0.2);
  EXPECT_EQ(lag.clip_range_value, 5.0);
  EXPECT_EQ(lag.clip_range_score, 50.0);
  EXPECT_EQ(lag.gamma, 1.0);
  EXPECT_EQ(lag.gae_lambda, 0.95);
  EXPECT_EQ(lag.lambda_init, 1.0);
  EXPECT_EQ(lag.lambda_lr, 0.1);
  EXPECT_EQ(lag.lambda_max, 5.0);
  EXPECT_EQ(lag.lambda_update_delay_steps, 0);
  EXPECT_EQ(lag.episode_cost_window_size, 128);
  EXPECT_EQ(lag.threshold, 0.0);
  EXPECT_EQ(lag.cost_unit, "score");
  EXPECT_EQ(lag.ptx_coeff, 16.0);
  EXPECT_EQ(lag.seed, 42);
  EXPECT_NO_THROW(lag.validate());

  PpoConfig c;
  std::set<std::string> names;
  size_t count = 0;
  c.visit([&](const char* name, auto&, const char* help) {
    names.insert(name);
    ++count;
    EXPECT_GT(std::string(help).size(), 3u) << name;
  });
  EXPECT_EQ(names.size(), count) << "duplicate flag names";
  for (const char* want : {"kl_coeff", "clip_range_ratio", "clip_range_score", "clip_range_value",
                           "gamma", "gae_lambda", "lambda_init", "lambda_lr", "lambda_max",
                           "lambda_update_delay_steps", "episode_cost_window_size", "threshold",
                           "ptx_coeff", "actor_lr", "critic_lr", "update_iters"})
    EXPECT_TRUE(names.count(want)) << want;

  c.gae_lambda = 1.5;
  expect_error_contains([&] { c.validate(); }, "--gae_lambda must be in [0, 1], got 1.5");
  c = PpoConfig{};
  c.actor_lr_scheduler_type = "cosin";
  expect_error_contains([&] { c.validate(); }, "--actor_lr_scheduler_type: unknown schedule 'cosin'");
  c = PpoConfig{};
  c.episode_cost_window_size = 0;
  expect_error_contains([&] { c.validate(); }, "--episode_cost_window_size must be >= 1");
}

}  // namespace
}  // namespace beaver::train
