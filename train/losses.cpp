// Score-model losses in double precision (see losses.h for the formulas). Gradients are
// written out term by term from the closed forms d/dx[-log σ(x)] = -σ(-x) and
// d/dx[x²] = 2x, so that each line can be checked against the formula it differentiates.
#include "train/losses.h"

#include <algorithm>
#include <cmath>

#include "csrc/error.h"

namespace beaver::train {

double log_sigmoid(double x) {
  // For x < 0, e^{-x} overflows: rewrite -log(1 + e^{-x}) = x - log(1 + e^{x}).
  return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x));
}

double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

ScoreLossType parse_score_loss_type(const std::string& s) {
  if (s == "sequence-wise") return ScoreLossType::SequenceWise;
  if (s == "token-wise") return ScoreLossType::TokenWise;
  BEAVER_FAIL("--loss_type: unknown value '", s, "' (expected sequence-wise or token-wise)");
}

MeanStd mean_std(std::span<const float> a, std::span<const float> b) {
  const size_t n = a.size() + b.size();
  MeanStd r;
  if (n == 0) return r;
  double sum = 0.0;
  for (float x : a) sum += x;
  for (float x : b) sum += x;
  r.mean = sum / double(n);
  if (n < 2) return r;
  double ss = 0.0;
  for (float x : a) ss += (x - r.mean) * (x - r.mean);
  for (float x : b) ss += (x - r.mean) * (x - r.mean);
  r.std = std::sqrt(ss / double(n - 1));
  return r;
}

namespace {

double mean_of(std::span<const float> a) {
  double s = 0.0;
  for (float x : a) s += x;
  return a.empty() ? 0.0 : s / double(a.size());
}

void check_pair_sizes(std::string_view op, size_t a, size_t b, std::string_view an,
                      std::string_view bn) {
  BEAVER_CHECK(a == b, op, ": ", an, " has ", a, " scores but ", bn, " has ", b);
  BEAVER_CHECK(a > 0, op, ": empty batch");
}

void check_finite(std::string_view op, std::span<const float> v, std::string_view name) {
  for (size_t i = 0; i < v.size(); ++i)
    BEAVER_CHECK(std::isfinite(v[i]), op, ": ", name, "[", i, "] is not finite (", v[i], ")");
}

void check_labels(std::string_view op, std::span<const uint8_t> v, size_t n,
                  std::string_view name) {
  BEAVER_CHECK(v.size() == n, op, ": ", name, " has ", v.size(), " labels for ", n, " pairs");
  for (size_t i = 0; i < n; ++i)
    BEAVER_CHECK(v[i] <= 1, op, ": ", name, "[", i, "] = ", int(v[i]), " is not 0 or 1");
}

// +1 for a response labelled unsafe, -1 for safe.
double cost_sign(uint8_t is_safe) { return is_safe ? -1.0 : 1.0; }

void fill_cost_metrics(CostLoss& r, std::span<const float> cs, std::span<const float> cu,
                       std::span<const uint8_t> safe_s, std::span<const uint8_t> safe_u) {
  const size_t B = cs.size();
  size_t ranked = 0, sign_ok = 0;
  for (size_t i = 0; i < B; ++i) {
    if (cu[i] > cs[i]) ++ranked;
    // Safe ⇔ cost <= 0 (the evaluation's convention), so a score of exactly 0 reads as safe.
    if ((cs[i] > 0) == !safe_s[i]) ++sign_ok;
    if ((cu[i] > 0) == !safe_u[i]) ++sign_ok;
    if (!safe_s[i] && safe_u[i]) r.inconsistent_pairs.push_back(int64_t(i));
  }
  r.accuracy = double(ranked) / double(B);
  r.sign_accuracy = double(sign_ok) / double(2 * B);
  r.cost = mean_std(cs, cu);
  r.safer_mean = mean_of(cs);
  r.unsafer_mean = mean_of(cu);
}

void fill_reward_metrics(RewardLoss& r, std::span<const float> rb, std::span<const float> rw) {
  size_t ranked = 0;
  for (size_t i = 0; i < rb.size(); ++i)
    if (rb[i] > rw[i]) ++ranked;
  r.accuracy = double(ranked) / double(rb.size());
  r.reward = mean_std(rb, rw);
  r.better_mean = mean_of(rb);
  r.worse_mean = mean_of(rw);
}

}  // namespace

RewardLoss reward_loss(std::span<const float> rb, std::span<const float> rw,
                       double regularization) {
  constexpr std::string_view op = "reward_loss";
  check_pair_sizes(op, rb.size(), rw.size(), "r_better", "r_worse");
  check_finite(op, rb, "r_better");
  check_finite(op, rw, "r_worse");
  const size_t B = rb.size();
  const double inv_b = 1.0 / double(B);
  RewardLoss r;
  r.grad_better.resize(B);
  r.grad_worse.resize(B);
  double rank = 0.0, sq = 0.0;
  for (size_t i = 0; i < B; ++i) {
    const double d = double(rb[i]) - double(rw[i]);
    rank -= log_sigmoid(d);
    sq += double(rb[i]) * rb[i] + double(rw[i]) * rw[i];
    // d/dd[-log σ(d)] = -σ(-d); the L2 mean runs over 2B scores: d/dr[reg·r²/(2B)] = reg·r/B.
    const double g = -sigmoid(-d);
    r.grad_better[i] = float(inv_b * (g + regularization * rb[i]));
    r.grad_worse[i] = float(inv_b * (-g + regularization * rw[i]));
  }
  r.ranking = rank * inv_b;
  r.l2 = regularization * sq / double(2 * B);
  r.loss = r.ranking + r.l2;
  fill_reward_metrics(r, rb, rw);
  return r;
}

CostLoss cost_loss(std::span<const float> cs, std::span<const float> cu,
                   std::span<const uint8_t> safe_s, std::span<const uint8_t> safe_u,
                   double regularization) {
  constexpr std::string_view op = "cost_loss";
  check_pair_sizes(op, cs.size(), cu.size(), "c_safer", "c_unsafer");
  check_finite(op, cs, "c_safer");
  check_finite(op, cu, "c_unsafer");
  const size_t B = cs.size();
  check_labels(op, safe_s, B, "is_safer_safe");
  check_labels(op, safe_u, B, "is_unsafer_safe");
  const double inv_b = 1.0 / double(B);
  CostLoss r;
  r.grad_safer.resize(B);
  r.grad_unsafer.resize(B);
  double rank = 0.0, sign = 0.0, sq = 0.0;
  for (size_t i = 0; i < B; ++i) {
    const double s = cs[i], u = cu[i];
    const double ss = cost_sign(safe_s[i]), su = cost_sign(safe_u[i]);
    rank -= log_sigmoid(u - s);
    sign -= log_sigmoid(ss * s) + log_sigmoid(su * u);
    sq += s * s + u * u;
    const double g_rank = sigmoid(-(u - s));  // d[-log σ(u - s)]/ds; the u-derivative is its negative
    const double g_s = -ss * sigmoid(-ss * s);
    const double g_u = -su * sigmoid(-su * u);
    r.grad_safer[i] = float(inv_b * (g_rank + g_s + regularization * s));
    r.grad_unsafer[i] = float(inv_b * (-g_rank + g_u + regularization * u));
  }
  r.ranking = rank * inv_b;
  r.sign = sign * inv_b;
  r.l2 = regularization * sq / double(2 * B);
  r.loss = r.ranking + r.sign + r.l2;
  fill_cost_metrics(r, cs, cu, safe_s, safe_u);
  return r;
}

// ---- Token-wise -------------------------------------------------------------------------------
namespace {

struct Window {
  int64_t begin = 0, end = 0;  // inclusive
};

void check_token_batch(std::string_view op, const TokenPairBatch& p) {
  BEAVER_CHECK(p.batch > 0 && p.length > 0, op, ": empty batch [", p.batch, ", ", p.length, "]");
  const size_t n = size_t(p.batch * p.length);
  BEAVER_CHECK(p.scores_a.size() == n && p.scores_b.size() == n, op, ": scores have ",
               p.scores_a.size(), " and ", p.scores_b.size(), " values, expected [", p.batch,
               ", ", p.length, "] = ", n);
  BEAVER_CHECK(p.ids_a.size() == n && p.ids_b.size() == n, op, ": token ids have ",
               p.ids_a.size(), " and ", p.ids_b.size(), " values, expected ", n);
  BEAVER_CHECK(p.end_a.size() == size_t(p.batch) && p.end_b.size() == size_t(p.batch), op,
               ": end indices have ", p.end_a.size(), " and ", p.end_b.size(),
               " values, expected ", p.batch);
  check_finite(op, p.scores_a, "scores (better/safer)");
  check_finite(op, p.scores_b, "scores (worse/unsafer)");
}

Window pair_window(std::string_view op, const TokenPairBatch& p, int64_t i) {
  const int64_t L = p.length;
  for (const auto* e : {&p.end_a, &p.end_b})
    BEAVER_CHECK((*e)[size_t(i)] >= 0 && (*e)[size_t(i)] < L, op, ": pair ", i,
                 ": end index ", (*e)[size_t(i)], " outside [0, ", L, ")");
  const int64_t end = std::max(p.end_a[size_t(i)], p.end_b[size_t(i)]);
  const int32_t* a = p.ids_a.data() + i * L;
  const int32_t* b = p.ids_b.data() + i * L;
  int64_t d = 0;
  while (d < L && a[d] == b[d]) ++d;
  BEAVER_CHECK(d < L, op, ": pair ", i, ": the two sequences are identical");
  BEAVER_CHECK(d <= end, op, ": pair ", i, ": first differing token ", d,
               " lies past the end index ", end);
  return {d, end};
}

std::vector<float> end_scores(const TokenPairBatch& p, std::span<const float> s,
                              std::span<const int64_t> end) {
  std::vector<float> r(size_t(p.batch));
  for (int64_t i = 0; i < p.batch; ++i) r[size_t(i)] = s[size_t(i * p.length + end[size_t(i)])];
  return r;
}

}  // namespace

RewardLoss reward_loss_tokenwise(const TokenPairBatch& p, double regularization) {
  constexpr std::string_view op = "reward_loss_tokenwise";
  check_token_batch(op, p);
  const int64_t B = p.batch, L = p.length;
  const double inv_b = 1.0 / double(B);
  RewardLoss r;
  r.grad_better.assign(size_t(B * L), 0.0f);
  r.grad_worse.assign(size_t(B * L), 0.0f);
  double rank = 0.0, l2 = 0.0;
  for (int64_t i = 0; i < B; ++i) {
    const Window w = pair_window(op, p, i);
    const double n = double(w.end - w.begin + 1);
    double pr = 0.0, sq = 0.0;
    for (int64_t t = w.begin; t <= w.end; ++t) {
      // Past its own end a sequence is padding: it enters with its end score.
      const size_t ka = size_t(i * L + std::min(t, p.end_a[size_t(i)]));
      const size_t kb = size_t(i * L + std::min(t, p.end_b[size_t(i)]));
      const double sb = p.scores_a[ka], sw = p.scores_b[kb];
      pr -= log_sigmoid(sb - sw);
      sq += sb * sb + sw * sw;
      const double g = -sigmoid(-(sb - sw)) / n;
      // Per-pair L2 mean over 2n values: d/ds[reg·s²/(2n)] = reg·s/n.
      r.grad_better[ka] += float(inv_b * (g + regularization * sb / n));
      r.grad_worse[kb] += float(inv_b * (-g + regularization * sw / n));
    }
    rank += pr / n;
    l2 += regularization * sq / (2 * n);
  }
  r.ranking = rank * inv_b;
  r.l2 = l2 * inv_b;
  r.loss = r.ranking + r.l2;
  const auto rb = end_scores(p, p.scores_a, p.end_a), rw = end_scores(p, p.scores_b, p.end_b);
  fill_reward_metrics(r, rb, rw);
  return r;
}

CostLoss cost_loss_tokenwise(const TokenPairBatch& p, std::span<const uint8_t> safe_s,
                             std::span<const uint8_t> safe_u, double regularization) {
  constexpr std::string_view op = "cost_loss_tokenwise";
  check_token_batch(op, p);
  const int64_t B = p.batch, L = p.length;
  check_labels(op, safe_s, size_t(B), "is_safer_safe");
  check_labels(op, safe_u, size_t(B), "is_unsafer_safe");
  const double inv_b = 1.0 / double(B);
  CostLoss r;
  r.grad_safer.assign(size_t(B * L), 0.0f);
  r.grad_unsafer.assign(size_t(B * L), 0.0f);
  double rank = 0.0, sign = 0.0, l2 = 0.0;
  for (int64_t i = 0; i < B; ++i) {
    const Window w = pair_window(op, p, i);
    const double n = double(w.end - w.begin + 1);
    const double ss = cost_sign(safe_s[size_t(i)]), su = cost_sign(safe_u[size_t(i)]);
    double pr = 0.0, ps = 0.0, sq = 0.0;
    for (int64_t t = w.begin; t <= w.end; ++t) {
      const size_t ka = size_t(i * L + std::min(t, p.end_a[size_t(i)]));
      const size_t kb = size_t(i * L + std::min(t, p.end_b[size_t(i)]));
      const double s = p.scores_a[ka], u = p.scores_b[kb];
      pr -= log_sigmoid(u - s);
      ps -= log_sigmoid(ss * s) + log_sigmoid(su * u);
      sq += s * s + u * u;
      const double g_rank = sigmoid(-(u - s));
      const double g_s = -ss * sigmoid(-ss * s), g_u = -su * sigmoid(-su * u);
      r.grad_safer[ka] += float(inv_b * (g_rank + g_s + regularization * s) / n);
      r.grad_unsafer[kb] += float(inv_b * (-g_rank + g_u + regularization * u) / n);
    }
    rank += pr / n;
    sign += ps / n;
    l2 += regularization * sq / (2 * n);
  }
  r.ranking = rank * inv_b;
  r.sign = sign * inv_b;
  r.l2 = l2 * inv_b;
  r.loss = r.ranking + r.sign + r.l2;
  const auto cs = end_scores(p, p.scores_a, p.end_a), cu = end_scores(p, p.scores_b, p.end_b);
  fill_cost_metrics(r, cs, cu, safe_s, safe_u);
  return r;
}

std::vector<int64_t> last_valid_index(std::span<const uint8_t> mask, int64_t rows,
                                      int64_t cols) {
  BEAVER_CHECK(rows >= 0 && cols > 0 && mask.size() == size_t(rows * cols),
               "last_valid_index: mask has ", mask.size(), " values, expected [", rows, ", ",
               cols, "]");
  std::vector<int64_t> end(static_cast<size_t>(rows), 0);
  for (int64_t i = 0; i < rows; ++i) {
    int64_t e = cols - 1;
    while (e >= 0 && !mask[size_t(i * cols + e)]) --e;
    BEAVER_CHECK(e >= 0, "last_valid_index: row ", i, " has no valid position");
    end[size_t(i)] = e;
  }
  return end;
}

}  // namespace beaver::train
