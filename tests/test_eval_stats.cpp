// Evaluation and arena statistics against hand-computed cases; intervals over seeds against
// Student-t quantiles from tables and hand-computed means; anchored, bootstrapped Elo.
#include <gtest/gtest.h>

#include <cmath>

#include "csrc/error.h"
#include "train/eval_stats.h"

namespace beaver::eval_stats {
namespace {

TEST(Arena, SummaryHarmfulRateUsesCostAboveZero) {
  const auto s = summarize({{1.0, -1.0}, {3.0, 0.0}, {2.0, 0.5}, {2.0, 2.5}});
  EXPECT_EQ(s.n, 4);
  EXPECT_DOUBLE_EQ(s.mean_reward, 2.0);
  EXPECT_DOUBLE_EQ(s.harmful_rate, 0.5);  // cost 0 counts as safe
  EXPECT_DOUBLE_EQ(s.std_reward, std::sqrt(0.5));
  EXPECT_EQ(summarize({}).n, 0);
}

TEST(Arena, TableCountsAndWinRates) {
  // A: safe, safe, unsafe, unsafe; B: safe better, unsafe better, safe worse, tie unsafe.
  const std::vector<Scored> a = {{0, -1}, {0, -1}, {1, 1}, {1, 1}};
  const std::vector<Scored> b = {{1, -1}, {1, 1}, {0, -2}, {1, 3}};
  const auto r = compare(a, b);
  EXPECT_EQ(r.better_safe, 1);
  EXPECT_EQ(r.better_unsafe, 1);
  EXPECT_EQ(r.worse_safe, 1);
  EXPECT_EQ(r.worse_unsafe, 0);
  EXPECT_EQ(r.ties, 1);
  EXPECT_DOUBLE_EQ(r.b_win_rate, 2.5 / 4);
  EXPECT_EQ(r.table[0][0].n, 1);
  EXPECT_DOUBLE_EQ(r.table[0][0].win_rate(), 1.0);
  EXPECT_EQ(r.table[0][1].n, 1);
  EXPECT_EQ(r.table[1][0].n, 1);
  EXPECT_DOUBLE_EQ(r.table[1][0].win_rate(), 0.0);
  EXPECT_DOUBLE_EQ(r.table[1][1].win_rate(), 0.5);
  EXPECT_GT(r.elo_b, r.elo_a);
  EXPECT_THROW(compare(a, {{0, 0}}), Error);
}

TEST(Arena, EloMatchesTheLogisticWinRate) {
  // 75 wins of 100 for player 1.
  std::vector<Game> g;
  for (int k = 0; k < 100; ++k) g.push_back(Game{1, 0, k < 75 ? 1.0 : 0.0});
  const auto r = elo(2, g);
  EXPECT_NEAR(r[0] + r[1], 2000.0, 1e-6);
  // Without the prior the gap would be exactly 400·log10(75/25) = 190.85; the one-draw
  // prior pulls it in slightly, never past it.
  EXPECT_GT(r[1] - r[0], 185.0);
  EXPECT_LT(r[1] - r[0], 400 * std::log10(75.0 / 25.0));
  // Order of games does not matter.
  std::vector<Game> rev(g.rbegin(), g.rend());
  const auto r2 = elo(2, rev);
  EXPECT_NEAR(r2[1], r[1], 1e-9);
  EXPECT_THROW(elo(2, {Game{0, 0, 1}}), Error);
}

TEST(Arena, EloUndefeatedStaysFiniteAndThreePlayersOrder) {
  const auto r = elo(2, {Game{0, 1, 1}, Game{0, 1, 1}, Game{0, 1, 1}});
  EXPECT_TRUE(std::isfinite(r[0]));
  EXPECT_GT(r[0], r[1]);
  std::vector<Game> g;
  for (int k = 0; k < 30; ++k) {
    g.push_back(Game{0, 1, k < 20 ? 1.0 : 0.0});
    g.push_back(Game{1, 2, k < 20 ? 1.0 : 0.0});
  }
  const auto r3 = elo(3, g);
  EXPECT_GT(r3[0], r3[1]);
  EXPECT_GT(r3[1], r3[2]);
}


TEST(SeedIntervals, StudentTQuantilesMatchTheTables) {
  // Two-sided 95% critical values (0.975 quantiles) from standard t tables.
  const std::vector<std::pair<int, double>> table = {
      {1, 12.7062047}, {2, 4.3026527}, {3, 3.1824463}, {4, 2.7764451},
      {9, 2.2621572}, {29, 2.0452296}, {100, 1.9839715}};
  for (const auto& [df, q] : table) EXPECT_NEAR(student_t_quantile(0.975, df), q, 1e-6) << df;
  EXPECT_NEAR(student_t_quantile(0.995, 5), 4.0321430, 1e-6);
  EXPECT_NEAR(student_t_quantile(0.025, 3), -3.1824463, 1e-6);
  EXPECT_NEAR(student_t_quantile(0.5, 7), 0.0, 1e-9);
  EXPECT_THROW(student_t_quantile(1.0, 3), Error);
  EXPECT_THROW(student_t_quantile(0.9, 0), Error);
}

TEST(SeedIntervals, MeanIntervalByHand) {
  // 1, 2, 3, 4: mean 2.5, s = sqrt(5/3), t(0.975, 3) = 3.1824463:
  // half = 3.1824463 * 1.2909944 / 2 = 2.0542603.
  const Interval iv = mean_interval({1, 2, 3, 4});
  EXPECT_EQ(iv.k, 4);
  EXPECT_EQ(iv.method, IntervalMethod::StudentT);
  EXPECT_DOUBLE_EQ(iv.mean, 2.5);
  EXPECT_NEAR(iv.half, 2.0542603, 1e-6);
  EXPECT_NEAR(iv.lo(), 0.4457397, 1e-6);
  EXPECT_NEAR(iv.hi(), 4.5542603, 1e-6);
  // Two seeds, 0.2 and 0.4: s = 0.1414214, t(0.975, 1) = 12.7062047, half = 1.2706205.
  EXPECT_NEAR(mean_interval({0.2, 0.4}).half, 1.2706205, 1e-6);
  // One seed: today's table, no interval.
  const Interval one = mean_interval({0.7});
  EXPECT_EQ(one.method, IntervalMethod::None);
  EXPECT_DOUBLE_EQ(one.mean, 0.7);
  EXPECT_DOUBLE_EQ(one.half, 0.0);
  // From 30 seeds on, the normal quantile: 0..29 has s = sqrt(77.5), half = 1.959964 * s / sqrt(30).
  std::vector<double> v30;
  for (int k = 0; k < 30; ++k) v30.push_back(k);
  const Interval n30 = mean_interval(v30);
  EXPECT_EQ(n30.method, IntervalMethod::Normal);
  EXPECT_NEAR(n30.half, 1.959964 * std::sqrt(77.5) / std::sqrt(30.0), 1e-5);
  EXPECT_THROW(mean_interval({}), Error);
}

TEST(PairedDifference, ByHandOnEachKindOfPrompt) {
  // Prompts 0, 2, 4 benign, 1 and 3 harmful (answers in prompt order for both policies).
  const std::vector<OracleAnswer> base = {
      {false, false, 1.0}, {true, true, 0}, {false, false, 2.0}, {true, false, 0}, {false, false, 0.5}};
  const std::vector<OracleAnswer> policy = {
      {false, false, 2.0}, {true, false, 0}, {false, false, 2.0}, {true, false, 0}, {false, false, 0.0}};
  const OracleDifference d = oracle_paired_difference(base, policy);
  // Helpfulness differences 1, 0, -0.5: mean 1/6, s² = (0.6944 + 0.0278 + 0.4444) / 2 = 0.58333,
  // standard error sqrt(0.58333 / 3) = 0.440959.
  EXPECT_EQ(d.helpfulness_benign.n, 3);
  EXPECT_NEAR(d.helpfulness_benign.mean, 1.0 / 6.0, 1e-12);
  EXPECT_NEAR(d.helpfulness_benign.standard_error, 0.440959, 1e-6);
  // Harm differences -1, 0: mean -0.5, s = 0.707107, standard error 0.5.
  EXPECT_EQ(d.harmful_rate_harmful_prompts.n, 2);
  EXPECT_DOUBLE_EQ(d.harmful_rate_harmful_prompts.mean, -0.5);
  EXPECT_NEAR(d.harmful_rate_harmful_prompts.standard_error, 0.5, 1e-12);
  // The same answers paired with themselves: no difference, no error.
  const OracleDifference same = oracle_paired_difference(base, base);
  EXPECT_EQ(same.helpfulness_benign.mean, 0.0);
  EXPECT_EQ(same.helpfulness_benign.standard_error, 0.0);
  // A policy without harmful prompts: n = 0 on that side.
  const OracleDifference benign_only = oracle_paired_difference({base[0]}, {policy[0]});
  EXPECT_EQ(benign_only.harmful_rate_harmful_prompts.n, 0);
  EXPECT_EQ(benign_only.helpfulness_benign.standard_error, 0.0);  // one prompt: none
  // Other prompts (count, or which are harmful) are refused.
  EXPECT_THROW(oracle_paired_difference(base, {policy.begin(), policy.end() - 1}), Error);
  std::vector<OracleAnswer> swapped = policy;
  swapped[0].harmful_prompt = true;
  EXPECT_THROW(oracle_paired_difference(base, swapped), Error);
}

TEST(Elo, AnchoredRatingsOfAKnownGameSet) {
  // Player 1 wins 7500 of 10000 against player 0 (the anchor), player 2 draws player 1 half of
  // 10000 games: with this many games the prior is negligible, so the gaps are the logistic
  // ones, 400 log10(3) = 190.85 and 0.
  std::vector<Game> g;
  for (int k = 0; k < 10000; ++k) {
    g.push_back(Game{1, 0, k % 4 != 0 ? 1.0 : 0.0});
    g.push_back(Game{2, 1, k % 2 == 0 ? 1.0 : 0.0});
  }
  const auto r = elo_anchored(3, g, 0);
  EXPECT_DOUBLE_EQ(r[0], 1000.0);
  EXPECT_NEAR(r[1], 1000.0 + 400 * std::log10(3.0), 0.5);
  EXPECT_NEAR(r[2], r[1], 0.5);
  // The anchor's rating is what it is told; the gaps do not depend on the anchor.
  const auto r2 = elo_anchored(3, g, 2, 1200.0);
  EXPECT_DOUBLE_EQ(r2[2], 1200.0);
  EXPECT_NEAR(r2[1] - r2[0], r[1] - r[0], 1e-9);
  EXPECT_THROW(elo_anchored(3, g, 3), Error);
}

TEST(Elo, TiesScoreHalfAsTheArenaCountsThem) {
  // Helpfulness on a benign prompt: 0 vs 1 equal -> tie; harmlessness on a harmful prompt: both
  // harmful -> tie, a harmless answer beats a harmful one.
  const std::vector<std::vector<OracleAnswer>> answers = {
      {{false, false, 2.0}, {true, true, 3.0}},   // policy 0
      {{false, false, 2.0}, {true, false, 0.0}},  // policy 1
      {{false, false, 3.0}, {true, true, 1.0}},   // policy 2
  };
  std::vector<PromptGames> help, harm;
  oracle_round_robin(answers, 7, help, harm);
  ASSERT_EQ(help.size(), 1u);
  ASSERT_EQ(harm.size(), 1u);
  EXPECT_EQ(help[0].stratum, 7);
  ASSERT_EQ(help[0].games.size(), 3u);  // (0,1), (0,2), (1,2)
  EXPECT_EQ(help[0].games[0].score_i, 0.5);
  EXPECT_EQ(help[0].games[1].score_i, 0.0);
  EXPECT_EQ(help[0].games[2].score_i, 0.0);
  ASSERT_EQ(harm[0].games.size(), 3u);
  EXPECT_EQ(harm[0].games[0].score_i, 0.0);  // 0 harmful, 1 harmless
  EXPECT_EQ(harm[0].games[1].score_i, 0.5);  // both harmful
  EXPECT_EQ(harm[0].games[2].score_i, 1.0);
  // A win and a tie rate exactly as two games scored 0.75, and above a win and a loss.
  const auto wt = elo_anchored(2, {Game{1, 0, 1.0}, Game{1, 0, 0.5}}, 0);
  const auto q = elo_anchored(2, {Game{1, 0, 0.75}, Game{1, 0, 0.75}}, 0);
  const auto wl = elo_anchored(2, {Game{1, 0, 1.0}, Game{1, 0, 0.0}}, 0);
  EXPECT_NEAR(wt[1], q[1], 1e-9);
  EXPECT_GT(wt[1], wl[1] + 1.0);
  EXPECT_THROW(oracle_round_robin({answers[0]}, 0, help, harm), Error);
}

// Prompts on which player 1 beats player 0 seven times in ten (deterministic pattern).
std::vector<PromptGames> seventy_percent(int prompts) {
  std::vector<PromptGames> out;
  for (int k = 0; k < prompts; ++k) out.push_back({0, {Game{1, 0, k % 10 < 7 ? 1.0 : 0.0}}});
  return out;
}

TEST(Elo, BootstrapIntervalShrinksWithMoreGamesAndIsSeeded) {
  const auto few = elo_bootstrap(2, seventy_percent(40), 0, 400, 5);
  const auto many = elo_bootstrap(2, seventy_percent(400), 0, 400, 5);
  for (const auto& r : {few, many}) {
    EXPECT_DOUBLE_EQ(r[0].rating, 1000.0);
    EXPECT_DOUBLE_EQ(r[0].lo, 1000.0);
    EXPECT_DOUBLE_EQ(r[0].hi, 1000.0);
    EXPECT_LT(r[1].lo, r[1].rating);
    EXPECT_GT(r[1].hi, r[1].rating);
    EXPECT_GT(r[1].lo, 1000.0);  // 70% of 40 games already separates the two
  }
  // Ten times the prompts: about sqrt(10) = 3.2 times narrower.
  const double w_few = few[1].hi - few[1].lo, w_many = many[1].hi - many[1].lo;
  EXPECT_LT(w_many, 0.5 * w_few) << w_few << " " << w_many;
  EXPECT_GT(w_many, 0.15 * w_few) << w_few << " " << w_many;
  // Same seed, same interval; another seed, another draw.
  const auto again = elo_bootstrap(2, seventy_percent(40), 0, 400, 5);
  EXPECT_EQ(again[1].lo, few[1].lo);
  EXPECT_EQ(again[1].hi, few[1].hi);
  const auto other = elo_bootstrap(2, seventy_percent(40), 0, 400, 6);
  EXPECT_NE(other[1].lo, few[1].lo);
}

TEST(Elo, BootstrapResamplesWithinEachSeed) {
  // Seed 0's prompts are all won by player 1, seed 1's all lost: resampling within each seed
  // keeps 20 wins and 20 losses in every resample, so the interval collapses onto 1000.
  // Pooled resampling would mix them and give a wide interval.
  std::vector<PromptGames> p;
  for (int k = 0; k < 20; ++k) p.push_back({0, {Game{1, 0, 1.0}}});
  for (int k = 0; k < 20; ++k) p.push_back({1, {Game{1, 0, 0.0}}});
  const auto r = elo_bootstrap(2, p, 0, 200, 3);
  EXPECT_NEAR(r[1].rating, 1000.0, 1e-6);
  EXPECT_NEAR(r[1].lo, 1000.0, 1e-6);
  EXPECT_NEAR(r[1].hi, 1000.0, 1e-6);
  EXPECT_THROW(elo_bootstrap(2, p, 0, 0, 3), Error);
}

}  // namespace
}  // namespace beaver::eval_stats
