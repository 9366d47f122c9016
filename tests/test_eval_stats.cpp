// Evaluation and arena statistics against hand-computed cases.
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

}  // namespace
}  // namespace beaver::eval_stats
