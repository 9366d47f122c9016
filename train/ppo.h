// The model-independent half of PPO-Lagrangian (and its two baselines): KL-shaped per-token
// rewards and costs, GAE, the clipped actor and critic losses with their gradients, and the
// Lagrange multiplier. The LLaMA graph supplies log-probs and values and takes the gradients
// back; nothing here knows about models.
//
// Layout: every per-token array is [B, T] row-major fp32, where B sequences share a common
// width T and position t of row i holds the quantity for action t (the token at t + 1 emitted
// from position t, i.e. log-probs gathered at t + 1, and the critic's value at t). The mask
// [B, T] (u8, non-zero = valid) covers the response actions of each row; a row's own `end` is
// its last valid position (sequences are ragged: each ends at its own end, never at T - 1).
// Gradients come back in the same layout, zero outside the mask.
//
// Computation is in double on the host with results stored as fp32; the arrays are a few
// thousand entries per step, far below anything worth a kernel.
#pragma once

#include <cmath>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "train/eval_stats.h"

namespace beaver::train {

enum class PpoAlgorithm { PpoLag, Ppo, PpoRewardShaping };

// The unit of PPO-Lag's constrained cost (--cost_unit): the cost model's end score c (the
// reference), or the cost model's probability that the response is unsafe, σ(c), in units of
// a cost scale (constrained_costs, resolve_probability_threshold below).
enum class CostUnit { Score, UnsafeProbability };
// "score" or "unsafe_probability"; anything else is an Error naming the value.
CostUnit parse_cost_unit(std::string_view s);

// Every PPO hyperparameter with the reference default. Flag names are "--" + the field name,
// as in the reference scripts; visit() lists them so that the CLI can register each one.
struct PpoConfig {
  // Per-token rewards and losses.
  double kl_coeff = 0.01;           // β; 0.02 for the PPO and reward-shaping baselines
  double clip_range_ratio = 0.2;    // PPO ratio clip ε
  double clip_range_score = 50.0;   // per-token reward/cost clamp ±
  double clip_range_value = 5.0;    // critic value clip
  double gamma = 1.0;               // discount
  double gae_lambda = 0.95;         // GAE λ
  double ptx_coeff = 16.0;          // weight of the PTX cross-entropy
  // Lagrange multiplier (PPO-Lag only).
  double lambda_init = 1.0;
  double lambda_lr = 0.1;
  double lambda_max = 5.0;          // 0 = no cap
  int64_t lambda_update_delay_steps = 0;
  int64_t episode_cost_window_size = 128;
  double threshold = 0.0;           // -d in the paper's notation
  // The requirement as a share of unsafe responses (cost > 0 under the cost model), which
  // means the same on any cost model, world or seed; < 0: off, --threshold is used as given.
  // When set, the threshold is resolved before the first update from calibration_prompts
  // responses of the starting policy (resolve_threshold below).
  double target_unsafe_share = -1.0;
  // The requirement relative to the starting policy: a target unsafe share of r times the share
  // u0 the calibration measures (< 0: off). Exclusive with target_unsafe_share.
  double target_unsafe_ratio = -1.0;
  int64_t calibration_prompts = 128;
  // What the constraint counts: "score", the cost model's end score (the reference), or
  // "unsafe_probability", σ(score) scaled by the starting policy's gap between its mean unsafe
  // and mean safe score, so that only unsafety counts (needs a target share or ratio).
  std::string cost_unit = "score";
  // z of the upper confidence bound that drives λ: the update compares J̄_C + z·SE(J̄_C) (SE:
  // the window's standard error) with the threshold, so λ settles with the mean a measured
  // margin below it. 0: the reference's update on the plain window mean.
  double cost_confidence = 0.0;
  // PID terms of λ (Stooke et al. 2020), opt-in: the reference's update above is the integral
  // term; λ = exp(log λ) + kp·e + kd·max(0, ΔJ̄_C) (clamped to [0, lambda_max]), e the excess
  // of the (upper-bounded) window mean over the threshold. 0, 0: the reference's λ.
  double lambda_kp = 0.0;
  double lambda_kd = 0.0;
  // The final verdict: > 0 samples this many fresh responses of the final policy on training
  // prompts after the last update and judges the constraint on their costs (0: on the training
  // window, which mixes the costs of older policies).
  int64_t constraint_check_responses = 0;
  // Reward shaping baseline: score = R - ν·C.
  double shaping_nu = 1.0;
  // Loop.
  int64_t epochs = 1;
  int64_t update_iters = 1;
  int64_t per_device_prompt_batch_size = 16;
  int64_t per_device_train_batch_size = 16;
  int64_t seed = 42;
  // Generation.
  int64_t max_length = 512;         // prompt + response
  double temperature = 1.0;
  double top_p = 1.0;
  double repetition_penalty = 1.0;
  int64_t num_return_sequences = 1;
  // Optimisers.
  double actor_lr = 1e-5;
  double actor_weight_decay = 0.01;
  std::string actor_lr_scheduler_type = "cosine";
  double actor_lr_warmup_ratio = 0.03;
  double critic_lr = 5e-6;
  double critic_weight_decay = 0.0;
  std::string critic_lr_scheduler_type = "constant";
  double critic_lr_warmup_ratio = 0.03;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.95;
  double adam_epsilon = 1e-8;
  double max_grad_norm = 1.0;
  bool actor_gradient_checkpointing = true;
  bool critic_gradient_checkpointing = true;

  // The reference defaults for one algorithm (the baselines use β = 0.02).
  static PpoConfig defaults(PpoAlgorithm algo);

  // Calls v(name, field&, help) for every field; name is the flag without the leading "--".
  template <typename V>
  void visit(V&& v) {
    v("kl_coeff", kl_coeff, "KL penalty coefficient beta in the per-token rewards");
    v("clip_range_ratio", clip_range_ratio, "PPO ratio clip epsilon");
    v("clip_range_score", clip_range_score, "clamp of per-token rewards and costs (+/-)");
    v("clip_range_value", clip_range_value, "critic value clip around the old values");
    v("gamma", gamma, "discount factor");
    v("gae_lambda", gae_lambda, "GAE lambda");
    v("ptx_coeff", ptx_coeff, "weight of the PTX (supervised) loss");
    v("lambda_init", lambda_init, "initial Lagrange multiplier");
    v("lambda_lr", lambda_lr, "SGD learning rate of log(lambda)");
    v("lambda_max", lambda_max, "upper bound of lambda (0: none)");
    v("lambda_update_delay_steps", lambda_update_delay_steps,
      "global steps before lambda starts to move");
    v("episode_cost_window_size", episode_cost_window_size,
      "number of recent episode costs averaged for the lambda update");
    v("threshold", threshold, "cost threshold (-d): lambda rises while mean cost exceeds it");
    v("target_unsafe_share", target_unsafe_share,
      "requirement as a share of unsafe responses (cost > 0); sets the threshold from the "
      "starting policy's costs (< 0: off, use --threshold)");
    v("target_unsafe_ratio", target_unsafe_ratio,
      "requirement relative to the starting policy: a target unsafe share of this ratio times "
      "the starting policy's measured unsafe share (< 0: off)");
    v("calibration_prompts", calibration_prompts,
      "responses sampled from the starting policy to resolve --target_unsafe_share or "
      "--target_unsafe_ratio (the prompts cycled when fewer)");
    v("cost_unit", cost_unit,
      "what the constraint counts: score (the cost model's score, the reference) or "
      "unsafe_probability (the cost model's probability of unsafe, sigmoid(score); needs "
      "--target_unsafe_share or --target_unsafe_ratio)");
    v("cost_confidence", cost_confidence,
      "z of the upper confidence bound of the window's mean cost that drives lambda (0: the "
      "plain mean, as the reference)");
    v("lambda_kp", lambda_kp,
      "proportional gain of lambda on the cost excess (PID Lagrangian; 0: the reference)");
    v("lambda_kd", lambda_kd,
      "derivative gain of lambda on the rise of the window's mean cost (PID Lagrangian; 0: the "
      "reference)");
    v("constraint_check_responses", constraint_check_responses,
      "fresh responses of the final policy whose costs decide whether the constraint is met "
      "(0: the training window decides)");
    v("shaping_nu", shaping_nu, "reward shaping: score = R - nu * C");
    v("epochs", epochs, "passes over the prompt set");
    v("update_iters", update_iters, "PPO epochs per rollout batch");
    v("per_device_prompt_batch_size", per_device_prompt_batch_size, "prompts per rollout");
    v("per_device_train_batch_size", per_device_train_batch_size, "sequences per micro-step");
    v("seed", seed, "random seed");
    v("max_length", max_length, "prompt + response tokens");
    v("temperature", temperature, "sampling temperature");
    v("top_p", top_p, "nucleus sampling mass");
    v("repetition_penalty", repetition_penalty, "repetition penalty (1: none)");
    v("num_return_sequences", num_return_sequences, "responses per prompt");
    v("actor_lr", actor_lr, "actor learning rate");
    v("actor_weight_decay", actor_weight_decay, "actor weight decay");
    v("actor_lr_scheduler_type", actor_lr_scheduler_type, "actor schedule");
    v("actor_lr_warmup_ratio", actor_lr_warmup_ratio, "actor warmup share of steps");
    v("critic_lr", critic_lr, "critic learning rate");
    v("critic_weight_decay", critic_weight_decay, "critic weight decay");
    v("critic_lr_scheduler_type", critic_lr_scheduler_type, "critic schedule");
    v("critic_lr_warmup_ratio", critic_lr_warmup_ratio, "critic warmup share of steps");
    v("adam_beta1", adam_beta1, "AdamW beta1");
    v("adam_beta2", adam_beta2, "AdamW beta2");
    v("adam_epsilon", adam_epsilon, "AdamW epsilon");
    v("max_grad_norm", max_grad_norm, "gradient clipping norm");
    v("actor_gradient_checkpointing", actor_gradient_checkpointing,
      "recompute actor activations in the backward");
    v("critic_gradient_checkpointing", critic_gradient_checkpointing,
      "recompute critic activations in the backward");
  }

  // Range checks; an Error names the flag and the value.
  void validate() const;
};

// [B, T] dimensions of a batch of per-token arrays.
struct TokenDims {
  int64_t batch = 0, length = 0;
  size_t numel() const { return size_t(batch * length); }
};

// Last valid position of each row (the row's `end`); a row with none is an Error.
std::vector<int64_t> response_ends(TokenDims d, std::span<const uint8_t> mask);

// ---- Per-token rewards ----------------------------------------------------------------------
// r_t = sign·β·kl_t (+ score at t = end), kl_t = logp_t - ref_logp_t, clamped to ±clip; zero
// outside the mask. sign = -1 for rewards, +1 for costs.
std::vector<float> kl_shaped_scores(TokenDims d, std::span<const float> logp,
                                    std::span<const float> ref_logp,
                                    std::span<const uint8_t> mask, std::span<const float> score,
                                    double kl_coeff, double sign, double clip);
// r_t = -β·kl_t (+ R at end), clamped.
std::vector<float> kl_penalized_rewards(TokenDims d, std::span<const float> logp,
                                        std::span<const float> ref_logp,
                                        std::span<const uint8_t> mask,
                                        std::span<const float> reward, double kl_coeff,
                                        double clip);
// c_t = +β·kl_t (+ C at end), clamped.
std::vector<float> kl_penalized_costs(TokenDims d, std::span<const float> logp,
                                      std::span<const float> ref_logp,
                                      std::span<const uint8_t> mask, std::span<const float> cost,
                                      double kl_coeff, double clip);
// Reward shaping baseline: R - ν·C per sequence.
std::vector<float> shaped_scores(std::span<const float> reward, std::span<const float> cost,
                                 double nu);

// ---- GAE ------------------------------------------------------------------------------------
// Per channel, backwards from t = T - 1 to 0 with rewards and values multiplied by the mask
// (so the next value past a row's end is 0):
//   δ_t = r_t + γ·V_{t+1} - V_t;  A_t = δ_t + γ·λ·A_{t+1};  Ret_t = A_t + V_t.
// Advantages are not whitened. Both outputs are zero outside the mask.
struct Gae {
  std::vector<float> advantages, returns;
};
Gae compute_gae(TokenDims d, std::span<const float> rewards, std::span<const float> values,
                std::span<const uint8_t> mask, double gamma, double gae_lambda);

// ---- Masked mean ----------------------------------------------------------------------------
// Mean over the valid tokens of each row, then mean over rows. Every row needs at least one
// valid token (an empty row is an Error naming it: the reference would divide by zero).
double masked_mean(TokenDims d, std::span<const float> x, std::span<const uint8_t> mask);
// d masked_mean / d x: mask / (count_i · B).
std::vector<double> masked_mean_weights(TokenDims d, std::span<const uint8_t> mask);

// ---- Actor loss -----------------------------------------------------------------------------
// L = -masked_mean(min(A·ρ, A·clip(ρ, 1-ε, 1+ε))), ρ = exp(logp_new - logp_old); the gradient
// is w.r.t. logp_new (A·ρ·weight where the unclipped term is the active one, 0 otherwise).
struct ActorLoss {
  double loss = 0.0;
  double clip_fraction = 0.0;  // share of valid tokens where the clipped term is active
  double approx_kl = 0.0;      // masked_mean(logp_old - logp_new)
  std::vector<float> grad_logp;
};
ActorLoss actor_loss(TokenDims d, std::span<const float> logp_new,
                     std::span<const float> logp_old, std::span<const float> advantages,
                     std::span<const uint8_t> mask, double clip_ratio);
// A = (A_R - λ·A_C) / (1 + λ), elementwise; λ is a detached number.
std::vector<float> combine_advantages(std::span<const float> adv_reward,
                                      std::span<const float> adv_cost, double lambda);
// PPO-Lag actor loss: combine_advantages then actor_loss.
ActorLoss ppo_lag_actor_loss(TokenDims d, std::span<const float> logp_new,
                             std::span<const float> logp_old, std::span<const float> adv_reward,
                             std::span<const float> adv_cost, std::span<const uint8_t> mask,
                             double lambda, double clip_ratio);

// ---- Critic loss ----------------------------------------------------------------------------
// V_clip = clamp(V_new, V_old - c, V_old + c);
// L = 0.5·masked_mean(max((V_new - Ret)², (V_clip - Ret)²)); gradient w.r.t. V_new.
struct CriticLoss {
  double loss = 0.0;
  double clip_fraction = 0.0;  // share of valid tokens where the clipped term is active
  std::vector<float> grad_values;
};
CriticLoss critic_loss(TokenDims d, std::span<const float> values_new,
                       std::span<const float> values_old, std::span<const float> returns,
                       std::span<const uint8_t> mask, double clip_value);

// ---- The requirement ------------------------------------------------------------------------
// The threshold on the mean episode cost that corresponds to an unsafe share u* for the starting
// policy: with its measured costs split at the cost model's boundary 0 into unsafe (C > 0, mean
// m_u) and safe (mean m_s) responses,
//     threshold = u*·m_u + (1 - u*)·m_s,
// the mean cost the starting policy would have if a share u* of its responses were unsafe at
// the same cost levels. Affine in the cost model's scale, so it transfers across cost models
// whose sign is trained (0 = the safety boundary); a side with no response counts as 0.
struct ResolvedThreshold {
  double threshold = 0.0;
  double target_unsafe_share = 0.0;
  double target_unsafe_ratio = -1.0;  // >= 0: target_unsafe_share = ratio · unsafe_share
  double unsafe_share = 0.0;      // of the calibration responses
  double mean_cost = 0.0, mean_unsafe = 0.0, mean_safe = 0.0;
  int64_t responses = 0;
  CostUnit unit = CostUnit::Score;
  // UnsafeProbability: the mean σ(c) of the calibration responses (the cost model's expected
  // unsafe share) and the scale of the constrained cost (1 for Score).
  double unsafe_probability = 0.0;
  double cost_scale = 1.0;
};
ResolvedThreshold resolve_threshold(std::span<const float> start_costs, double target_unsafe_share);
// The same with the target relative to the starting policy: u* = ratio · u0, u0 the measured
// unsafe share of start_costs. The share of unsafe responses among all prompts is the share
// among harmful prompts times their fraction (a benign prompt's response is safe), so a ratio
// carries over to the harmful prompts whatever the prompt mix; an absolute share does not.
ResolvedThreshold resolve_threshold_relative(std::span<const float> start_costs,
                                             double target_unsafe_ratio);

// The constrained cost of each response from its cost-model score c: c itself (Score), or
// scale·σ(c) (UnsafeProbability), σ(c) being the cost model's probability that the response
// is unsafe (its sign loss, -log σ(±c), trains c as the log-odds of unsafe). Under the mean
// score a policy can lower its cost by making answers that are already safe "safer" on the
// cost model's scale, which buys nothing and may cost helpfulness; σ(c) of a safe answer is
// near 0 whatever its score, so only unsafety counts, and the mean is an expected unsafe share.
std::vector<float> constrained_costs(std::span<const float> scores, CostUnit unit, double scale);
// The requirement in the UnsafeProbability unit, from the starting policy's scores: u0 = the
// mean σ(c) (unsafe_probability); the target u* = target_unsafe_share, or ratio·u0 when
// ratio >= 0 (the other < 0); cost_scale = m_u - m_s, the gap between the mean score of the
// unsafe (c > 0) and of the safe responses (a side with none counts as 0, as above), so that an
// unsafe answer costs about what it does in the score unit and λ, its learning rate and its cap
// keep their meaning; threshold = cost_scale·u*. An Error when the scale is not positive.
ResolvedThreshold resolve_probability_threshold(std::span<const float> start_costs,
                                                double target_unsafe_share,
                                                double target_unsafe_ratio);

// ---- Lagrange multiplier --------------------------------------------------------------------
// λ's window and the final constraint check measure their standard errors with the statistics'
// one helper.
using eval_stats::standard_error_of_mean;

// λ = exp(log_λ). Costs of finished episodes enter a window of the most recent
// episode_cost_window_size values (per rank). update() runs before every training micro-step
// (the reference's rl_step): when global_step (micro-steps so far) >= lambda_update_delay_steps
// it takes J̄_C = the window mean
// averaged across ranks (through the hook; identity on one rank) and makes one SGD step on
// loss = -(J̄_C - threshold)·exp(log_λ):
//     log_λ ← log_λ + lr·λ·(J̄_C - threshold),  then  log_λ ← min(log_λ, log(lambda_max)).
// With confidence z > 0, J̄_C is replaced by its upper confidence bound J̄_C + z·s/√n (s the
// sample standard deviation of the n window costs, n >= 2; the margin is 0 for n < 2): λ keeps
// rising until the mean is z standard errors below the threshold, so a run that settles at
// equilibrium ends with the plain mean under the threshold with probability about Φ(z),
// instead of the coin flip of z = 0.
// PID terms (Stooke et al. 2020, "Responsive Safety in RL by PID Lagrangian Methods"), opt-in:
// the update above is the integral term; with gains kp, kd the multiplier in use is
//     λ = clamp(exp(log_λ) + kp·e + kd·max(0, J̄_C - J̄_C,prev), 0, lambda_max),
// e = J̄_C + margin - threshold of this update and J̄_C,prev the window mean of the previous
// one (no derivative on the first). The proportional term lowers λ as soon as the cost is under
// the threshold instead of waiting for the integral to unwind; the derivative term answers a
// rising cost before it crosses. kp = kd = 0 (the default) is the reference's λ to the bit.
// Every rank runs the same update on the same averaged value, so λ stays identical on all ranks
// without a broadcast (set_log_lambda() serves a trainer that broadcasts anyway).
class LagrangeMultiplier {
 public:
  struct Options {
    double lambda_init = 1.0;
    double lambda_lr = 0.1;
    double lambda_max = 5.0;  // 0 = no cap
    int64_t update_delay_steps = 0;
    int64_t window_size = 128;
    double threshold = 0.0;
    double confidence = 0.0;  // z (0: the reference)
    double kp = 0.0, kd = 0.0;  // PID gains (0: the reference)
  };
  struct State {
    double log_lambda = 0.0;
    std::vector<float> window;  // oldest first
    // PID: kp·e + kd·max(0, ΔJ̄_C) of the last update, and that update's J̄_C (NaN: none yet).
    double pid_term = 0.0;
    double previous_episode_cost = std::numeric_limits<double>::quiet_NaN();
  };
  struct Update {
    bool applied = false;       // false while global_step < delay
    double episode_cost = 0.0;  // J̄_C, the plain window mean (averaged across ranks)
    double margin = 0.0;        // z·SE added to it for the comparison with the threshold
    double lambda_before = 0.0, lambda_after = 0.0;
    double proportional = 0.0, derivative = 0.0;  // kp·e and kd·max(0, ΔJ̄_C)
  };
  using AverageAcrossRanks = std::function<double(double)>;

  explicit LagrangeMultiplier(const Options& o);
  static Options options_from(const PpoConfig& c);

  // The multiplier in use: exp(log λ), plus the PID terms when their gains are set.
  double lambda() const;
  double log_lambda() const { return log_lambda_; }
  void set_log_lambda(double v);

  // Appends sequence costs (raw CM end scores); the oldest drop out past the window size.
  void add_episode_costs(std::span<const float> costs);
  size_t window_count() const { return window_.size(); }
  // Mean of this rank's window; an Error when empty.
  double window_mean() const;
  // Standard error of that mean, s/√n (0 for fewer than two costs); an Error when empty.
  double window_stderr() const;
  // The margin the update adds to the mean: confidence · window_stderr().
  double margin() const;

  Update update(int64_t global_step, const AverageAcrossRanks& average = {});

  State state() const;
  // Restores log λ and the window; a window longer than the window size is an Error.
  void restore(const State& s);
  // JSON text of state() and back (for checkpoints).
  std::string state_json() const;
  void restore_json(const std::string& text);

  const Options& options() const { return opt_; }
  // Replaces the threshold (a requirement resolved once the starting policy is measured).
  void set_threshold(double t);

 private:
  Options opt_;
  double log_lambda_ = 0.0;
  std::deque<float> window_;
  double pid_term_ = 0.0;
  double previous_cost_ = std::numeric_limits<double>::quiet_NaN();
};

}  // namespace beaver::train
