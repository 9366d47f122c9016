// PPO machinery on host arrays (see ppo.h for layout and formulas). Arguments are checked
// once per call with messages that name the function and the argument; the loops are plain
// double-precision loops in a fixed order, so results are bitwise reproducible.
#include "train/ppo.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "csrc/error.h"
#include "train/losses.h"

namespace beaver::train {

// ---- Config ------------------------------------------------------------------------------------
PpoConfig PpoConfig::defaults(PpoAlgorithm algo) {
  PpoConfig c;
  if (algo != PpoAlgorithm::PpoLag) c.kl_coeff = 0.02;
  return c;
}

CostUnit parse_cost_unit(std::string_view s) {
  if (s == "score") return CostUnit::Score;
  if (s == "unsafe_probability") return CostUnit::UnsafeProbability;
  BEAVER_FAIL("--cost_unit: expected score or unsafe_probability, got '", s, "'");
}

void PpoConfig::validate() const {
  auto positive = [](const char* name, double v) {
    BEAVER_CHECK(std::isfinite(v) && v > 0, "--", name, " must be > 0, got ", v);
  };
  auto non_negative = [](const char* name, double v) {
    BEAVER_CHECK(std::isfinite(v) && v >= 0, "--", name, " must be >= 0, got ", v);
  };
  auto unit = [](const char* name, double v) {
    BEAVER_CHECK(v >= 0 && v <= 1, "--", name, " must be in [0, 1], got ", v);
  };
  non_negative("kl_coeff", kl_coeff);
  positive("clip_range_ratio", clip_range_ratio);
  positive("clip_range_score", clip_range_score);
  positive("clip_range_value", clip_range_value);
  unit("gamma", gamma);
  unit("gae_lambda", gae_lambda);
  non_negative("ptx_coeff", ptx_coeff);
  positive("lambda_init", lambda_init);
  non_negative("lambda_lr", lambda_lr);
  non_negative("lambda_max", lambda_max);
  BEAVER_CHECK(std::isfinite(threshold), "--threshold must be finite, got ", threshold);
  BEAVER_CHECK(lambda_update_delay_steps >= 0, "--lambda_update_delay_steps must be >= 0, got ",
               lambda_update_delay_steps);
  BEAVER_CHECK(episode_cost_window_size >= 1, "--episode_cost_window_size must be >= 1, got ",
               episode_cost_window_size);
  BEAVER_CHECK(target_unsafe_share < 0 || target_unsafe_share <= 1,
               "--target_unsafe_share must be in [0, 1] (or negative: off), got ",
               target_unsafe_share);
  BEAVER_CHECK(target_unsafe_ratio < 0 || target_unsafe_ratio <= 1,
               "--target_unsafe_ratio must be in [0, 1] (or negative: off), got ",
               target_unsafe_ratio);
  BEAVER_CHECK(target_unsafe_share < 0 || target_unsafe_ratio < 0,
               "--target_unsafe_share (", target_unsafe_share, ") and --target_unsafe_ratio (",
               target_unsafe_ratio, ") both state the requirement: give one of them");
  BEAVER_CHECK(parse_cost_unit(cost_unit) == CostUnit::Score || target_unsafe_share >= 0 ||
                   target_unsafe_ratio >= 0,
               "--cost_unit unsafe_probability states the requirement as a share: give "
               "--target_unsafe_share or --target_unsafe_ratio (--threshold is on the cost "
               "model's score)");
  BEAVER_CHECK(std::isfinite(cost_confidence) && cost_confidence >= 0,
               "--cost_confidence must be >= 0 (0: the reference's update), got ",
               cost_confidence);
  BEAVER_CHECK(calibration_prompts >= 1, "--calibration_prompts must be >= 1, got ",
               calibration_prompts);
  non_negative("lambda_kp", lambda_kp);
  non_negative("lambda_kd", lambda_kd);
  BEAVER_CHECK(constraint_check_responses >= 0,
               "--constraint_check_responses must be >= 0 (0: the training window decides), got ",
               constraint_check_responses);
  non_negative("shaping_nu", shaping_nu);
  for (auto [name, v] : {std::pair{"epochs", epochs}, {"update_iters", update_iters},
                         {"per_device_prompt_batch_size", per_device_prompt_batch_size},
                         {"per_device_train_batch_size", per_device_train_batch_size},
                         {"max_length", max_length}, {"num_return_sequences", num_return_sequences}})
    BEAVER_CHECK(v >= 1, "--", name, " must be >= 1, got ", v);
  positive("temperature", temperature);
  BEAVER_CHECK(top_p > 0 && top_p <= 1, "--top_p must be in (0, 1], got ", top_p);
  positive("repetition_penalty", repetition_penalty);
  non_negative("actor_lr", actor_lr);
  non_negative("critic_lr", critic_lr);
  non_negative("actor_weight_decay", actor_weight_decay);
  non_negative("critic_weight_decay", critic_weight_decay);
  unit("actor_lr_warmup_ratio", actor_lr_warmup_ratio);
  unit("critic_lr_warmup_ratio", critic_lr_warmup_ratio);
  BEAVER_CHECK(adam_beta1 >= 0 && adam_beta1 < 1, "--adam_beta1 must be in [0, 1), got ",
               adam_beta1);
  BEAVER_CHECK(adam_beta2 >= 0 && adam_beta2 < 1, "--adam_beta2 must be in [0, 1), got ",
               adam_beta2);
  positive("adam_epsilon", adam_epsilon);
  non_negative("max_grad_norm", max_grad_norm);
  for (const auto* s : {&actor_lr_scheduler_type, &critic_lr_scheduler_type})
    BEAVER_CHECK(*s == "cosine" || *s == "constant" || *s == "constant_with_warmup" ||
                     *s == "linear",
                 "--", (s == &actor_lr_scheduler_type ? "actor" : "critic"),
                 "_lr_scheduler_type: unknown schedule '", *s,
                 "' (expected cosine, constant, constant_with_warmup or linear)");
}

// ---- Argument checks ---------------------------------------------------------------------------
namespace {

void check_dims(std::string_view op, TokenDims d) {
  BEAVER_CHECK(d.batch > 0 && d.length > 0, op, ": empty batch [", d.batch, ", ", d.length, "]");
}

void check_tokens(std::string_view op, TokenDims d, std::span<const float> x,
                  std::string_view name) {
  BEAVER_CHECK(x.size() == d.numel(), op, ": ", name, " has ", x.size(), " values, expected [",
               d.batch, ", ", d.length, "] = ", d.numel());
}

void check_mask(std::string_view op, TokenDims d, std::span<const uint8_t> mask) {
  BEAVER_CHECK(mask.size() == d.numel(), op, ": mask has ", mask.size(), " values, expected [",
               d.batch, ", ", d.length, "] = ", d.numel());
}

void check_rows(std::string_view op, TokenDims d, std::span<const float> x,
                std::string_view name) {
  BEAVER_CHECK(x.size() == size_t(d.batch), op, ": ", name, " has ", x.size(),
               " values, expected one per sequence (", d.batch, ")");
}

// Valid-token count per row; an empty row is an Error.
std::vector<int64_t> row_counts(std::string_view op, TokenDims d, std::span<const uint8_t> mask) {
  std::vector<int64_t> n(size_t(d.batch), 0);
  for (int64_t i = 0; i < d.batch; ++i) {
    for (int64_t t = 0; t < d.length; ++t) n[size_t(i)] += mask[size_t(i * d.length + t)] != 0;
    BEAVER_CHECK(n[size_t(i)] > 0, op, ": sequence ", i, " has no valid token in the mask");
  }
  return n;
}

}  // namespace

std::vector<int64_t> response_ends(TokenDims d, std::span<const uint8_t> mask) {
  constexpr std::string_view op = "response_ends";
  check_dims(op, d);
  check_mask(op, d, mask);
  std::vector<int64_t> end(static_cast<size_t>(d.batch), 0);
  for (int64_t i = 0; i < d.batch; ++i) {
    int64_t e = d.length - 1;
    while (e >= 0 && !mask[size_t(i * d.length + e)]) --e;
    BEAVER_CHECK(e >= 0, op, ": sequence ", i, " has no valid token in the mask");
    end[size_t(i)] = e;
  }
  return end;
}

// ---- Per-token rewards -------------------------------------------------------------------------
std::vector<float> kl_shaped_scores(TokenDims d, std::span<const float> logp,
                                    std::span<const float> ref_logp,
                                    std::span<const uint8_t> mask, std::span<const float> score,
                                    double kl_coeff, double sign, double clip) {
  constexpr std::string_view op = "kl_shaped_scores";
  check_dims(op, d);
  check_tokens(op, d, logp, "logp");
  check_tokens(op, d, ref_logp, "ref_logp");
  check_mask(op, d, mask);
  check_rows(op, d, score, "score");
  BEAVER_CHECK(clip > 0, op, ": clip must be > 0, got ", clip);
  const auto end = response_ends(d, mask);
  std::vector<float> out(d.numel(), 0.0f);
  for (int64_t i = 0; i < d.batch; ++i) {
    for (int64_t t = 0; t < d.length; ++t) {
      const size_t k = size_t(i * d.length + t);
      if (!mask[k]) continue;
      double r = sign * kl_coeff * (double(logp[k]) - double(ref_logp[k]));
      if (t == end[size_t(i)]) r += score[size_t(i)];
      out[k] = float(std::clamp(r, -clip, clip));
    }
  }
  return out;
}

std::vector<float> kl_penalized_rewards(TokenDims d, std::span<const float> logp,
                                        std::span<const float> ref_logp,
                                        std::span<const uint8_t> mask,
                                        std::span<const float> reward, double kl_coeff,
                                        double clip) {
  return kl_shaped_scores(d, logp, ref_logp, mask, reward, kl_coeff, -1.0, clip);
}

std::vector<float> kl_penalized_costs(TokenDims d, std::span<const float> logp,
                                      std::span<const float> ref_logp,
                                      std::span<const uint8_t> mask, std::span<const float> cost,
                                      double kl_coeff, double clip) {
  return kl_shaped_scores(d, logp, ref_logp, mask, cost, kl_coeff, +1.0, clip);
}

std::vector<float> shaped_scores(std::span<const float> reward, std::span<const float> cost,
                                 double nu) {
  BEAVER_CHECK(reward.size() == cost.size(), "shaped_scores: ", reward.size(), " rewards but ",
               cost.size(), " costs");
  std::vector<float> out(reward.size());
  for (size_t i = 0; i < reward.size(); ++i) out[i] = float(double(reward[i]) - nu * cost[i]);
  return out;
}

// ---- GAE ---------------------------------------------------------------------------------------
Gae compute_gae(TokenDims d, std::span<const float> rewards, std::span<const float> values,
                std::span<const uint8_t> mask, double gamma, double gae_lambda) {
  constexpr std::string_view op = "compute_gae";
  check_dims(op, d);
  check_tokens(op, d, rewards, "rewards");
  check_tokens(op, d, values, "values");
  check_mask(op, d, mask);
  Gae g;
  g.advantages.assign(d.numel(), 0.0f);
  g.returns.assign(d.numel(), 0.0f);
  for (int64_t i = 0; i < d.batch; ++i) {
    double next_value = 0.0, next_adv = 0.0;
    for (int64_t t = d.length - 1; t >= 0; --t) {
      const size_t k = size_t(i * d.length + t);
      // Masking by selection rather than multiplication: whatever sits outside the mask
      // (padding, even NaN) never enters the recursion.
      const double r = mask[k] ? double(rewards[k]) : 0.0;
      const double v = mask[k] ? double(values[k]) : 0.0;
      const double delta = r + gamma * next_value - v;
      const double a = delta + gamma * gae_lambda * next_adv;
      if (mask[k]) {
        g.advantages[k] = float(a);
        g.returns[k] = float(a + v);
      }
      next_value = v;
      next_adv = a;
    }
  }
  return g;
}

// ---- Masked mean -------------------------------------------------------------------------------
std::vector<double> masked_mean_weights(TokenDims d, std::span<const uint8_t> mask) {
  constexpr std::string_view op = "masked_mean";
  check_dims(op, d);
  check_mask(op, d, mask);
  const auto n = row_counts(op, d, mask);
  std::vector<double> w(d.numel(), 0.0);
  for (int64_t i = 0; i < d.batch; ++i)
    for (int64_t t = 0; t < d.length; ++t) {
      const size_t k = size_t(i * d.length + t);
      if (mask[k]) w[k] = 1.0 / (double(n[size_t(i)]) * double(d.batch));
    }
  return w;
}

double masked_mean(TokenDims d, std::span<const float> x, std::span<const uint8_t> mask) {
  check_tokens("masked_mean", d, x, "x");
  const auto w = masked_mean_weights(d, mask);
  // Row sums first, then the mean of row means: the reference's order of operations.
  double total = 0.0;
  for (int64_t i = 0; i < d.batch; ++i) {
    double row = 0.0;
    for (int64_t t = 0; t < d.length; ++t) {
      const size_t k = size_t(i * d.length + t);
      if (mask[k]) row += w[k] * x[k];
    }
    total += row;
  }
  return total;
}

// ---- Actor loss --------------------------------------------------------------------------------
ActorLoss actor_loss(TokenDims d, std::span<const float> logp_new,
                     std::span<const float> logp_old, std::span<const float> adv,
                     std::span<const uint8_t> mask, double clip_ratio) {
  constexpr std::string_view op = "actor_loss";
  check_dims(op, d);
  check_tokens(op, d, logp_new, "logp_new");
  check_tokens(op, d, logp_old, "logp_old");
  check_tokens(op, d, adv, "advantages");
  check_mask(op, d, mask);
  BEAVER_CHECK(clip_ratio > 0 && clip_ratio < 1, op, ": clip_ratio must be in (0, 1), got ",
               clip_ratio);
  const auto w = masked_mean_weights(d, mask);
  ActorLoss r;
  r.grad_logp.assign(d.numel(), 0.0f);
  size_t clipped = 0, valid = 0;
  double loss = 0.0, kl = 0.0;
  for (size_t k = 0; k < d.numel(); ++k) {
    if (!mask[k]) continue;
    ++valid;
    const double a = adv[k];
    const double ratio = std::exp(double(logp_new[k]) - double(logp_old[k]));
    const double clipped_ratio = std::clamp(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio);
    const double s1 = a * ratio, s2 = a * clipped_ratio;
    // The clipped term carries no gradient once the ratio is outside the band; it is the
    // active one when it is strictly smaller (within the band both terms are equal).
    const bool clip_active = s2 < s1;
    clipped += clip_active;
    loss -= w[k] * std::min(s1, s2);
    kl += w[k] * (double(logp_old[k]) - double(logp_new[k]));
    // d(a·ρ)/d logp_new = a·ρ.
    if (!clip_active) r.grad_logp[k] = float(-w[k] * s1);
  }
  r.loss = loss;
  r.approx_kl = kl;
  r.clip_fraction = double(clipped) / double(valid);
  return r;
}

std::vector<float> combine_advantages(std::span<const float> ar, std::span<const float> ac,
                                      double lambda) {
  BEAVER_CHECK(ar.size() == ac.size(), "combine_advantages: ", ar.size(),
               " reward advantages but ", ac.size(), " cost advantages");
  BEAVER_CHECK(std::isfinite(lambda) && lambda >= 0,
               "combine_advantages: lambda must be finite and >= 0, got ", lambda);
  std::vector<float> a(ar.size());
  for (size_t k = 0; k < ar.size(); ++k)
    a[k] = float((double(ar[k]) - lambda * double(ac[k])) / (1.0 + lambda));
  return a;
}

ActorLoss ppo_lag_actor_loss(TokenDims d, std::span<const float> logp_new,
                             std::span<const float> logp_old, std::span<const float> adv_reward,
                             std::span<const float> adv_cost, std::span<const uint8_t> mask,
                             double lambda, double clip_ratio) {
  check_tokens("ppo_lag_actor_loss", d, adv_reward, "adv_reward");
  check_tokens("ppo_lag_actor_loss", d, adv_cost, "adv_cost");
  const auto a = combine_advantages(adv_reward, adv_cost, lambda);
  return actor_loss(d, logp_new, logp_old, a, mask, clip_ratio);
}

// ---- Critic loss -------------------------------------------------------------------------------
CriticLoss critic_loss(TokenDims d, std::span<const float> vn, std::span<const float> vo,
                       std::span<const float> ret, std::span<const uint8_t> mask,
                       double clip_value) {
  constexpr std::string_view op = "critic_loss";
  check_dims(op, d);
  check_tokens(op, d, vn, "values_new");
  check_tokens(op, d, vo, "values_old");
  check_tokens(op, d, ret, "returns");
  check_mask(op, d, mask);
  BEAVER_CHECK(clip_value > 0, op, ": clip_value must be > 0, got ", clip_value);
  const auto w = masked_mean_weights(d, mask);
  CriticLoss r;
  r.grad_values.assign(d.numel(), 0.0f);
  size_t clipped = 0, valid = 0;
  double loss = 0.0;
  for (size_t k = 0; k < d.numel(); ++k) {
    if (!mask[k]) continue;
    ++valid;
    const double v = vn[k], old = vo[k], R = ret[k];
    const double vc = std::clamp(v, old - clip_value, old + clip_value);
    const double l1 = (v - R) * (v - R), l2 = (vc - R) * (vc - R);
    // When the clipped term is strictly larger, V_new lies outside the band and the clipped
    // value does not depend on it: no gradient.
    const bool clip_active = l2 > l1;
    clipped += clip_active;
    loss += 0.5 * w[k] * std::max(l1, l2);
    if (!clip_active) r.grad_values[k] = float(w[k] * (v - R));  // d[0.5·(v-R)²]/dv
  }
  r.loss = loss;
  r.clip_fraction = double(clipped) / double(valid);
  return r;
}

// ---- The requirement ---------------------------------------------------------------------------
ResolvedThreshold resolve_threshold(std::span<const float> costs, double target) {
  BEAVER_CHECK(!costs.empty(), "resolve_threshold: no calibration cost");
  BEAVER_CHECK(target >= 0 && target <= 1, "resolve_threshold: the target unsafe share must be in "
               "[0, 1], got ", target);
  ResolvedThreshold r;
  r.target_unsafe_share = target;
  r.responses = int64_t(costs.size());
  double su = 0, ss = 0, all = 0;
  int64_t nu = 0;
  for (size_t i = 0; i < costs.size(); ++i) {
    BEAVER_CHECK(std::isfinite(costs[i]), "resolve_threshold: calibration cost ", i,
                 " is not finite");
    all += costs[i];
    if (costs[i] > 0) {
      su += costs[i];
      ++nu;
    } else {
      ss += costs[i];
    }
  }
  const int64_t ns = r.responses - nu;
  r.unsafe_share = double(nu) / double(r.responses);
  r.mean_cost = all / double(r.responses);
  r.mean_unsafe = nu ? su / double(nu) : 0.0;
  r.mean_safe = ns ? ss / double(ns) : 0.0;
  r.threshold = target * r.mean_unsafe + (1.0 - target) * r.mean_safe;
  return r;
}

ResolvedThreshold resolve_threshold_relative(std::span<const float> costs, double ratio) {
  BEAVER_CHECK(ratio >= 0 && ratio <= 1, "resolve_threshold_relative: the target unsafe ratio "
               "must be in [0, 1], got ", ratio);
  // The starting share first (the same checks), then the absolute resolution at ratio · u0.
  const double u0 = resolve_threshold(costs, 0.0).unsafe_share;
  ResolvedThreshold r = resolve_threshold(costs, ratio * u0);
  r.target_unsafe_ratio = ratio;
  return r;
}

std::vector<float> constrained_costs(std::span<const float> scores, CostUnit unit, double scale) {
  BEAVER_CHECK(std::isfinite(scale) && scale > 0, "constrained_costs: the cost scale must be "
               "finite and > 0, got ", scale);
  std::vector<float> out(scores.begin(), scores.end());
  if (unit == CostUnit::Score) return out;
  for (float& c : out) c = float(scale * sigmoid(double(c)));
  return out;
}

ResolvedThreshold resolve_probability_threshold(std::span<const float> costs, double share,
                                                double ratio) {
  BEAVER_CHECK((share >= 0) != (ratio >= 0), "resolve_probability_threshold: give one of the "
               "target share (", share, ") and the ratio (", ratio, ")");
  BEAVER_CHECK(share <= 1 && ratio <= 1, "resolve_probability_threshold: the target share and "
               "the ratio must be in [0, 1], got ", share >= 0 ? share : ratio);
  // The split at 0 (and its checks) as in the score unit; the target is set below.
  ResolvedThreshold r = resolve_threshold(costs, 0.0);
  r.unit = CostUnit::UnsafeProbability;
  double p = 0;
  for (float c : costs) p += sigmoid(double(c));
  r.unsafe_probability = p / double(costs.size());
  r.target_unsafe_ratio = ratio >= 0 ? ratio : -1.0;
  r.target_unsafe_share = ratio >= 0 ? ratio * r.unsafe_probability : share;
  r.cost_scale = r.mean_unsafe - r.mean_safe;
  BEAVER_CHECK(std::isfinite(r.cost_scale) && r.cost_scale > 0, "resolve_probability_threshold: ",
               "the starting policy's mean unsafe score ", r.mean_unsafe, " is not above its mean "
               "safe score ", r.mean_safe, "; the cost model gives no scale to the unsafe share");
  r.threshold = r.cost_scale * r.target_unsafe_share;
  return r;
}

// ---- Lagrange multiplier -----------------------------------------------------------------------
void LagrangeMultiplier::set_threshold(double t) {
  BEAVER_CHECK(std::isfinite(t), "LagrangeMultiplier: the threshold must be finite, got ", t);
  opt_.threshold = t;
}

LagrangeMultiplier::LagrangeMultiplier(const Options& o) : opt_(o) {
  BEAVER_CHECK(std::isfinite(o.lambda_init) && o.lambda_init > 0,
               "LagrangeMultiplier: --lambda_init must be > 0, got ", o.lambda_init);
  BEAVER_CHECK(std::isfinite(o.lambda_lr) && o.lambda_lr >= 0,
               "LagrangeMultiplier: --lambda_lr must be >= 0, got ", o.lambda_lr);
  BEAVER_CHECK(std::isfinite(o.lambda_max) && o.lambda_max >= 0,
               "LagrangeMultiplier: --lambda_max must be >= 0 (0: no cap), got ", o.lambda_max);
  BEAVER_CHECK(o.window_size >= 1, "LagrangeMultiplier: --episode_cost_window_size must be >= 1, got ",
               o.window_size);
  BEAVER_CHECK(o.update_delay_steps >= 0,
               "LagrangeMultiplier: --lambda_update_delay_steps must be >= 0, got ",
               o.update_delay_steps);
  BEAVER_CHECK(std::isfinite(o.threshold), "LagrangeMultiplier: --threshold must be finite, got ",
               o.threshold);
  BEAVER_CHECK(std::isfinite(o.confidence) && o.confidence >= 0,
               "LagrangeMultiplier: --cost_confidence must be >= 0, got ", o.confidence);
  BEAVER_CHECK(std::isfinite(o.kp) && o.kp >= 0, "LagrangeMultiplier: --lambda_kp must be >= 0, got ",
               o.kp);
  BEAVER_CHECK(std::isfinite(o.kd) && o.kd >= 0, "LagrangeMultiplier: --lambda_kd must be >= 0, got ",
               o.kd);
  // As in the reference, λ_init is not clamped to lambda_max: the cap applies after updates.
  log_lambda_ = std::log(o.lambda_init);
}

LagrangeMultiplier::Options LagrangeMultiplier::options_from(const PpoConfig& c) {
  Options o;
  o.lambda_init = c.lambda_init;
  o.lambda_lr = c.lambda_lr;
  o.lambda_max = c.lambda_max;
  o.update_delay_steps = c.lambda_update_delay_steps;
  o.window_size = c.episode_cost_window_size;
  o.threshold = c.threshold;
  o.confidence = c.cost_confidence;
  o.kp = c.lambda_kp;
  o.kd = c.lambda_kd;
  return o;
}

double LagrangeMultiplier::lambda() const {
  const double integral = std::exp(log_lambda_);
  // Without PID gains λ is the integral term exactly, uncapped (λ_init may exceed lambda_max).
  if (opt_.kp == 0 && opt_.kd == 0) return integral;
  const double l = std::max(0.0, integral + pid_term_);
  return opt_.lambda_max > 0 ? std::min(l, opt_.lambda_max) : l;
}

void LagrangeMultiplier::set_log_lambda(double v) {
  BEAVER_CHECK(std::isfinite(v), "LagrangeMultiplier: log lambda must be finite, got ", v);
  log_lambda_ = v;
}

void LagrangeMultiplier::add_episode_costs(std::span<const float> costs) {
  for (size_t i = 0; i < costs.size(); ++i) {
    BEAVER_CHECK(std::isfinite(costs[i]), "LagrangeMultiplier: episode cost ", i,
                 " is not finite (", costs[i], ")");
    window_.push_back(costs[i]);
    if (int64_t(window_.size()) > opt_.window_size) window_.pop_front();
  }
}

double LagrangeMultiplier::window_mean() const {
  BEAVER_CHECK(!window_.empty(), "LagrangeMultiplier: no episode cost recorded yet");
  double s = 0.0;
  for (float c : window_) s += c;
  return s / double(window_.size());
}

double LagrangeMultiplier::window_stderr() const {
  return standard_error_of_mean(window_, window_mean());
}

double LagrangeMultiplier::margin() const {
  return opt_.confidence > 0 ? opt_.confidence * window_stderr() : 0.0;
}

LagrangeMultiplier::Update LagrangeMultiplier::update(int64_t global_step,
                                                      const AverageAcrossRanks& average) {
  Update u;
  u.lambda_before = u.lambda_after = lambda();
  if (global_step < opt_.update_delay_steps) return u;
  const double local = window_mean();
  u.episode_cost = average ? average(local) : local;
  BEAVER_CHECK(std::isfinite(u.episode_cost),
               "LagrangeMultiplier: the cross-rank episode cost is not finite (", u.episode_cost,
               ")");
  // The windows hold every rank's costs (train/rlhf.cpp), so the local margin is the global one.
  u.margin = margin();
  // Gradient of -(J - threshold)·exp(log λ) w.r.t. log λ is -(J - threshold)·λ (the integral
  // term's own λ).
  const double excess = u.episode_cost + u.margin - opt_.threshold;
  double next = log_lambda_ + opt_.lambda_lr * std::exp(log_lambda_) * excess;
  if (opt_.lambda_max > 0) next = std::min(next, std::log(opt_.lambda_max));
  log_lambda_ = next;
  u.proportional = opt_.kp * excess;
  if (opt_.kd > 0 && std::isfinite(previous_cost_))
    u.derivative = opt_.kd * std::max(0.0, u.episode_cost - previous_cost_);
  pid_term_ = u.proportional + u.derivative;
  previous_cost_ = u.episode_cost;
  u.applied = true;
  u.lambda_after = lambda();
  return u;
}

LagrangeMultiplier::State LagrangeMultiplier::state() const {
  return State{log_lambda_, std::vector<float>(window_.begin(), window_.end()), pid_term_,
               previous_cost_};
}

void LagrangeMultiplier::restore(const State& s) {
  BEAVER_CHECK(std::isfinite(s.log_lambda), "LagrangeMultiplier::restore: log lambda is not finite");
  BEAVER_CHECK(int64_t(s.window.size()) <= opt_.window_size, "LagrangeMultiplier::restore: ",
               s.window.size(), " episode costs exceed the window size ", opt_.window_size);
  for (size_t i = 0; i < s.window.size(); ++i)
    BEAVER_CHECK(std::isfinite(s.window[i]), "LagrangeMultiplier::restore: episode cost ", i,
                 " is not finite");
  BEAVER_CHECK(std::isfinite(s.pid_term), "LagrangeMultiplier::restore: the PID term is not finite");
  BEAVER_CHECK(!std::isinf(s.previous_episode_cost),
               "LagrangeMultiplier::restore: the previous episode cost is infinite");
  log_lambda_ = s.log_lambda;
  window_.assign(s.window.begin(), s.window.end());
  pid_term_ = s.pid_term;
  previous_cost_ = s.previous_episode_cost;
}

std::string LagrangeMultiplier::state_json() const {
  nlohmann::json j;
  j["log_lambda"] = log_lambda_;
  j["episode_costs"] = std::vector<float>(window_.begin(), window_.end());
  j["pid_term"] = pid_term_;
  j["previous_episode_cost"] =
      std::isfinite(previous_cost_) ? nlohmann::json(previous_cost_) : nlohmann::json();
  return j.dump();
}

void LagrangeMultiplier::restore_json(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    BEAVER_FAIL("LagrangeMultiplier::restore_json: bad JSON: ", e.what());
  }
  BEAVER_CHECK(j.is_object() && j.contains("log_lambda") && j["log_lambda"].is_number() &&
                   j.contains("episode_costs") && j["episode_costs"].is_array(),
               "LagrangeMultiplier::restore_json: expected {\"log_lambda\": number, "
               "\"episode_costs\": [numbers]}");
  State s;
  s.log_lambda = j["log_lambda"].get<double>();
  for (const auto& c : j["episode_costs"]) {
    BEAVER_CHECK(c.is_number(), "LagrangeMultiplier::restore_json: episode_costs holds a non-number");
    s.window.push_back(c.get<float>());
  }
  // The PID fields are optional (a checkpoint written before them restores the reference's λ).
  if (j.contains("pid_term")) {
    BEAVER_CHECK(j["pid_term"].is_number(), "LagrangeMultiplier::restore_json: pid_term is not a number");
    s.pid_term = j["pid_term"].get<double>();
  }
  if (j.contains("previous_episode_cost") && !j["previous_episode_cost"].is_null()) {
    BEAVER_CHECK(j["previous_episode_cost"].is_number(),
                 "LagrangeMultiplier::restore_json: previous_episode_cost is not a number or null");
    s.previous_episode_cost = j["previous_episode_cost"].get<double>();
  }
  restore(s);
}

}  // namespace beaver::train
