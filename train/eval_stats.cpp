#include "train/eval_stats.h"

#include <algorithm>
#include <cmath>

#include "csrc/error.h"
#include "csrc/philox.h"

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

namespace {

// Games summed per player and per pair: what Bradley-Terry's likelihood depends on.
struct Tally {
  int players = 0;
  std::vector<double> wins;    // per player, score summed over its games
  std::vector<double> played;  // players x players, games between i and j (symmetric)
  explicit Tally(int n) : players(n), wins(size_t(n), 0.0), played(size_t(n) * size_t(n), 0.0) {}
  void add(const Game& g) {
    wins[size_t(g.i)] += g.score_i;
    wins[size_t(g.j)] += 1.0 - g.score_i;
    played[size_t(g.i) * size_t(players) + size_t(g.j)] += 1;
    played[size_t(g.j) * size_t(players) + size_t(g.i)] += 1;
  }
};

void check_games(int players, const std::vector<Game>& games) {
  BEAVER_CHECK(players > 0, "elo: need at least one player");
  for (const auto& g : games)
    BEAVER_CHECK(g.i >= 0 && g.j >= 0 && g.i < players && g.j < players && g.i != g.j &&
                     g.score_i >= 0 && g.score_i <= 1,
                 "elo: bad game (", g.i, ", ", g.j, ", ", g.score_i, ")");
}

// Ratings 400·log10(strength), up to a common shift. Minorization-maximization for the
// Bradley-Terry strengths p (Hunter 2004), with each player also drawing once against a
// virtual player of strength 1.
std::vector<double> bradley_terry(const Tally& t) {
  const size_t n = size_t(t.players);
  std::vector<double> p(n, 1.0), w(n);
  for (size_t k = 0; k < n; ++k) w[k] = t.wins[k] + 0.5;
  for (int iter = 0; iter < 2000; ++iter) {
    double change = 0;
    std::vector<double> np(n);
    for (size_t k = 0; k < n; ++k) {
      double denom = 1.0 / (p[k] + 1.0);
      for (size_t j = 0; j < n; ++j) {
        const double m = t.played[k * n + j];
        if (m > 0) denom += m / (p[k] + p[j]);
      }
      np[k] = w[k] / denom;
      change = std::max(change, std::fabs(std::log(np[k] / p[k])));
    }
    p = np;
    if (change < 1e-12) break;
  }
  std::vector<double> r(n);
  for (size_t k = 0; k < n; ++k) r[k] = 400.0 * std::log10(p[k]);
  return r;
}

Tally tally(int players, const std::vector<Game>& games) {
  check_games(players, games);
  Tally t(players);
  for (const auto& g : games) t.add(g);
  return t;
}

// Linear interpolation between the order statistics of sorted values (q in [0, 1]).
double quantile_sorted(const std::vector<double>& v, double q) {
  if (v.empty()) return 0.0;
  const double pos = q * double(v.size() - 1);
  const size_t lo = size_t(std::floor(pos));
  const size_t hi = std::min(v.size() - 1, lo + 1);
  return v[lo] + (pos - double(lo)) * (v[hi] - v[lo]);
}

// Regularized incomplete beta I_x(a, b) by its continued fraction (modified Lentz), using the
// symmetry I_x(a, b) = 1 - I_{1-x}(b, a) where the fraction converges slowly.
double incomplete_beta(double x, double a, double b) {
  if (x <= 0) return 0.0;
  if (x >= 1) return 1.0;
  if (x > (a + 1) / (a + b + 2)) return 1.0 - incomplete_beta(1.0 - x, b, a);
  const double ln_front = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) +
                          b * std::log1p(-x);
  const double tiny = 1e-300;
  double c = 1.0, d = 1.0 - (a + b) * x / (a + 1);
  if (std::fabs(d) < tiny) d = tiny;
  d = 1.0 / d;
  double f = d;
  for (int m = 1; m <= 1000; ++m) {
    for (int half = 0; half < 2; ++half) {
      // Even step: m(b-m)x / ((a+2m-1)(a+2m)); odd step: -(a+m)(a+b+m)x / ((a+2m)(a+2m+1)).
      const double num = half == 0
                             ? double(m) * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
                             : -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1));
      d = 1.0 + num * d;
      if (std::fabs(d) < tiny) d = tiny;
      c = 1.0 + num / c;
      if (std::fabs(c) < tiny) c = tiny;
      d = 1.0 / d;
      f *= c * d;
      if (half == 1 && std::fabs(c * d - 1.0) < 1e-15) return std::exp(ln_front) * f / a;
    }
  }
  return std::exp(ln_front) * f / a;
}

double student_t_cdf(double t, int df) {
  const double x = double(df) / (double(df) + t * t);
  const double tail = 0.5 * incomplete_beta(x, 0.5 * df, 0.5);  // P(T > |t|)
  return t >= 0 ? 1.0 - tail : tail;
}

}  // namespace

std::vector<double> elo(int players, const std::vector<Game>& games, double mean) {
  std::vector<double> r = bradley_terry(tally(players, games));
  double avg = 0;
  for (double x : r) avg += x / players;
  for (auto& x : r) x += mean - avg;
  return r;
}

std::vector<double> elo_anchored(int players, const std::vector<Game>& games, int anchor,
                                 double anchor_rating) {
  BEAVER_CHECK(anchor >= 0 && anchor < players, "elo: anchor ", anchor, " is not one of the ",
               players, " players");
  std::vector<double> r = bradley_terry(tally(players, games));
  const double shift = anchor_rating - r[size_t(anchor)];
  for (auto& x : r) x += shift;
  return r;
}

double student_t_quantile(double p, int df) {
  BEAVER_CHECK(p > 0 && p < 1, "student_t_quantile: p must lie in (0, 1), got ", p);
  BEAVER_CHECK(df >= 1, "student_t_quantile: need at least one degree of freedom, got ", df);
  if (p < 0.5) return -student_t_quantile(1.0 - p, df);
  double lo = 0, hi = 1;
  while (student_t_cdf(hi, df) < p) hi *= 2;  // p = 1 - 1e-12 at df 1 needs hi ~ 3e11
  for (int i = 0; i < 200 && hi - lo > 1e-13 * std::max(1.0, hi); ++i) {
    const double mid = 0.5 * (lo + hi);
    (student_t_cdf(mid, df) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

Interval mean_interval(const std::vector<double>& values) {
  BEAVER_CHECK(!values.empty(), "mean_interval: no values");
  Interval iv;
  iv.k = int(values.size());
  double sum = 0;
  for (double v : values) sum += v;
  iv.mean = sum / iv.k;
  if (iv.k == 1) return iv;
  double ss = 0;
  for (double v : values) ss += (v - iv.mean) * (v - iv.mean);
  const double s = std::sqrt(ss / (iv.k - 1));
  iv.method = iv.k < 30 ? IntervalMethod::StudentT : IntervalMethod::Normal;
  const double q = iv.k < 30 ? student_t_quantile(0.975, iv.k - 1) : 1.959963984540054;
  iv.half = q * s / std::sqrt(double(iv.k));
  return iv;
}

const char* interval_method_name(IntervalMethod m) {
  switch (m) {
    case IntervalMethod::None: return "none";
    case IntervalMethod::StudentT: return "student-t";
    case IntervalMethod::Normal: return "normal";
  }
  return "none";
}

namespace {

PairedDifference paired(const std::vector<double>& d) {
  PairedDifference p;
  p.n = int(d.size());
  if (d.empty()) return p;
  double sum = 0;
  for (double x : d) sum += x;
  p.mean = sum / double(d.size());
  p.standard_error = standard_error_of_mean(d, p.mean);
  return p;
}

}  // namespace

OracleDifference oracle_paired_difference(const std::vector<OracleAnswer>& baseline,
                                          const std::vector<OracleAnswer>& policy) {
  BEAVER_CHECK(baseline.size() == policy.size(), "oracle_paired_difference: the baseline answered ",
               baseline.size(), " prompts and the policy ", policy.size(),
               "; a paired difference needs the same prompts");
  std::vector<double> harm, help;
  for (size_t k = 0; k < baseline.size(); ++k) {
    BEAVER_CHECK(baseline[k].harmful_prompt == policy[k].harmful_prompt,
                 "oracle_paired_difference: prompt ", k, " is ",
                 baseline[k].harmful_prompt ? "harmful" : "benign", " for the baseline but ",
                 policy[k].harmful_prompt ? "harmful" : "benign",
                 " for the policy; a paired difference needs the same prompts in the same order");
    if (baseline[k].harmful_prompt)
      harm.push_back(double(policy[k].harmful) - double(baseline[k].harmful));
    else
      help.push_back(policy[k].helpfulness - baseline[k].helpfulness);
  }
  return OracleDifference{paired(harm), paired(help)};
}

void oracle_round_robin(const std::vector<std::vector<OracleAnswer>>& answers, int stratum,
                        std::vector<PromptGames>& helpfulness,
                        std::vector<PromptGames>& harmlessness) {
  BEAVER_CHECK(answers.size() >= 2, "elo: need at least two policies, got ", answers.size());
  const size_t n = answers.front().size();
  for (size_t p = 0; p < answers.size(); ++p)
    BEAVER_CHECK(answers[p].size() == n, "elo: policy ", p, " answered ", answers[p].size(),
                 " prompts, policy 0 answered ", n, "; they must answer the same prompts");
  for (size_t k = 0; k < n; ++k) {
    const bool harmful_prompt = answers.front()[k].harmful_prompt;
    PromptGames pg{stratum, {}};
    for (size_t i = 0; i < answers.size(); ++i) {
      BEAVER_CHECK(answers[i][k].harmful_prompt == harmful_prompt, "elo: prompt ", k,
                   " is harmful for one policy and benign for another");
      for (size_t j = i + 1; j < answers.size(); ++j) {
        const OracleAnswer& a = answers[i][k];
        const OracleAnswer& b = answers[j][k];
        double s;  // score of i
        if (harmful_prompt)
          s = a.harmful == b.harmful ? 0.5 : (b.harmful ? 1.0 : 0.0);
        else
          s = a.helpfulness > b.helpfulness ? 1.0 : a.helpfulness < b.helpfulness ? 0.0 : 0.5;
        pg.games.push_back(Game{int(i), int(j), s});
      }
    }
    (harmful_prompt ? harmlessness : helpfulness).push_back(std::move(pg));
  }
}

std::vector<RatedPlayer> elo_bootstrap(int players, const std::vector<PromptGames>& prompts,
                                       int anchor, int resamples, uint64_t seed,
                                       double anchor_rating) {
  BEAVER_CHECK(resamples >= 1, "elo: the bootstrap needs at least one resample, got ", resamples);
  BEAVER_CHECK(anchor >= 0 && anchor < players, "elo: anchor ", anchor, " is not one of the ",
               players, " players");
  std::vector<Game> all;
  std::vector<std::vector<size_t>> strata;  // prompt indices per stratum, in order of appearance
  std::vector<int> stratum_ids;
  for (size_t k = 0; k < prompts.size(); ++k) {
    check_games(players, prompts[k].games);
    all.insert(all.end(), prompts[k].games.begin(), prompts[k].games.end());
    size_t s = 0;
    while (s < stratum_ids.size() && stratum_ids[s] != prompts[k].stratum) ++s;
    if (s == stratum_ids.size()) {
      stratum_ids.push_back(prompts[k].stratum);
      strata.emplace_back();
    }
    strata[s].push_back(k);
  }
  const std::vector<double> point = elo_anchored(players, all, anchor, anchor_rating);
  std::vector<std::vector<double>> draws(static_cast<size_t>(players));
  PhiloxStream rng(seed, 0x454c4f);  // "ELO"
  for (int b = 0; b < resamples; ++b) {
    Tally t(players);
    for (const auto& members : strata) {
      for (size_t d = 0; d < members.size(); ++d) {
        const size_t pick = size_t((uint64_t(rng.next_u32()) * members.size()) >> 32);
        for (const auto& g : prompts[members[pick]].games) t.add(g);
      }
    }
    const std::vector<double> r = bradley_terry(t);
    for (int k = 0; k < players; ++k)
      draws[size_t(k)].push_back(r[size_t(k)] - r[size_t(anchor)] + anchor_rating);
  }
  std::vector<RatedPlayer> out(static_cast<size_t>(players));
  for (int k = 0; k < players; ++k) {
    auto& d = draws[size_t(k)];
    std::sort(d.begin(), d.end());
    out[size_t(k)] = RatedPlayer{point[size_t(k)], quantile_sorted(d, 0.025),
                                 quantile_sorted(d, 0.975)};
  }
  return out;
}

}  // namespace beaver::eval_stats
