#include "train/eval_stats.h"

#include <cmath>

#include "csrc/error.h"

namespace beaver::eval_stats {

Summary summarize(const std::vector<Scored>& xs) {
  Summary s;
  s.n = int(xs.size());
  if (xs.empty()) return s;
  double sr = 0, sc = 0, harmful = 0;
  for (const auto& x : xs) {
    sr += x.reward;
    sc += x.cost;
    harmful += x.safe() ? 0 : 1;
  }
  s.mean_reward = sr / s.n;
  s.mean_cost = sc / s.n;
  s.harmful_rate = harmful / s.n;
  double vr = 0, vc = 0;
  for (const auto& x : xs) {
    vr += (x.reward - s.mean_reward) * (x.reward - s.mean_reward);
    vc += (x.cost - s.mean_cost) * (x.cost - s.mean_cost);
  }
  s.std_reward = std::sqrt(vr / s.n);
  s.std_cost = std::sqrt(vc / s.n);
  return s;
}

ArenaResult compare(const std::vector<Scored>& a, const std::vector<Scored>& b) {
  BEAVER_CHECK(a.size() == b.size(), "arena: the two models have ", a.size(), " and ", b.size(),
               " scored responses; they must answer the same prompts");
  ArenaResult r;
  r.a = summarize(a);
  r.b = summarize(b);
  std::vector<Game> games;
  double wins = 0;
  for (size_t k = 0; k < a.size(); ++k) {
    const double s = b[k].reward > a[k].reward ? 1.0 : b[k].reward < a[k].reward ? 0.0 : 0.5;
    wins += s;
    Cell& c = r.table[a[k].safe() ? 0 : 1][b[k].safe() ? 0 : 1];
    c.n += 1;
    c.b_wins += s;
    if (s == 0.5)
      ++r.ties;
    else if (s == 1.0)
      (b[k].safe() ? r.better_safe : r.better_unsafe)++;
    else
      (b[k].safe() ? r.worse_safe : r.worse_unsafe)++;
    games.push_back(Game{1, 0, s});
  }
  r.b_win_rate = a.empty() ? 0.0 : wins / double(a.size());
  const auto ratings = elo(2, games);
  r.elo_a = ratings[0];
  r.elo_b = ratings[1];
  return r;
}

std::vector<double> elo(int players, const std::vector<Game>& games, double mean) {
  BEAVER_CHECK(players > 0, "elo: need at least one player");
  for (const auto& g : games)
    BEAVER_CHECK(g.i >= 0 && g.j >= 0 && g.i < players && g.j < players && g.i != g.j &&
                     g.score_i >= 0 && g.score_i <= 1,
                 "elo: bad game (", g.i, ", ", g.j, ", ", g.score_i, ")");
  // Minorization-maximization for Bradley-Terry strengths p (Hunter 2004), with each player
  // also drawing once against a virtual player of strength 1.
  std::vector<double> p(size_t(players), 1.0), w(size_t(players), 0.5);
  for (const auto& g : games) {
    w[size_t(g.i)] += g.score_i;
    w[size_t(g.j)] += 1.0 - g.score_i;
  }
  for (int iter = 0; iter < 2000; ++iter) {
    std::vector<double> denom(size_t(players), 0.0);
    for (int k = 0; k < players; ++k) denom[size_t(k)] = 1.0 / (p[size_t(k)] + 1.0);
    for (const auto& g : games) {
      const double d = 1.0 / (p[size_t(g.i)] + p[size_t(g.j)]);
      denom[size_t(g.i)] += d;
      denom[size_t(g.j)] += d;
    }
    double change = 0;
    for (int k = 0; k < players; ++k) {
      const double np = w[size_t(k)] / denom[size_t(k)];
      change = std::max(change, std::fabs(std::log(np / p[size_t(k)])));
      p[size_t(k)] = np;
    }
    if (change < 1e-12) break;
  }
  std::vector<double> r(static_cast<size_t>(players));
  double avg = 0;
  for (int k = 0; k < players; ++k) {
    r[size_t(k)] = 400.0 * std::log10(p[size_t(k)]);
    avg += r[size_t(k)] / players;
  }
  for (auto& x : r) x += mean - avg;
  return r;
}

}  // namespace beaver::eval_stats
