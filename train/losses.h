// Score-model losses for the reward model (RM) and the cost model (CM), with their gradients
// with respect to the scores the LLaMA graph produced, and the metrics the trainers log.
//
// The graph runs the forward of 2B sequences (B "better"/"safer" then B "worse"/"unsafer"),
// copies the scores to the host, calls one of these functions and feeds the returned gradients
// back into the score head's backward. Everything here is computed in double precision on the
// host: B is small (tens of pairs), and exact numbers keep the losses testable.
//
// Sequence-wise losses (the default) act on the end scores (score at the last valid token):
//   RM:  L = mean_i[-log σ(r_b - r_w)] + reg · mean(r_b², r_w²)
//   CM:  L = mean_i[-log σ(c_u - c_s) - log σ(sign_s·c_s) - log σ(sign_u·c_u)] + reg·mean(c²)
// with sign = +1 for a response labelled unsafe, -1 for a safe one (cost > 0 means unsafe).
// Token-wise variants act on the per-token scores [B, L] of both sequences: for each pair, the
// same terms averaged over positions from the first token where the two token sequences differ
// up to max(end_better, end_worse) inclusive (the L2 term over the same window of both), then
// averaged over pairs. Past its own end, the shorter sequence enters with its end score (its
// gradient goes there): its padding slots are never attended to, so their scores would be
// context-free, while the reference's right-padded pad query attends to the whole sequence.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace beaver::train {

// Numerically stable log σ(x) = -log(1 + e^{-x}); finite for every finite x.
double log_sigmoid(double x);
// σ(x) without overflow for large |x|.
double sigmoid(double x);

// Sequence-wise or token-wise loss, as the reference's --loss_type.
enum class ScoreLossType { SequenceWise, TokenWise };
// "sequence-wise" | "token-wise"; anything else is an Error naming the value.
ScoreLossType parse_score_loss_type(const std::string& s);

// Score-model training knobs (reference flag names).
struct ScoreLossConfig {
  double regularization = 0.001;                          // --regularization
  ScoreLossType loss_type = ScoreLossType::SequenceWise;  // --loss_type
};

// Mean and sample standard deviation (n - 1 denominator, 0 for n < 2).
struct MeanStd {
  double mean = 0.0;
  double std = 0.0;
};
MeanStd mean_std(std::span<const float> a, std::span<const float> b = {});

// ---- Reward model ---------------------------------------------------------------------------
struct RewardLoss {
  double loss = 0.0;       // ranking + l2
  double ranking = 0.0;    // mean -log σ(r_b - r_w) (token-wise: mean over pairs of the window mean)
  double l2 = 0.0;         // reg · mean of squared scores
  double accuracy = 0.0;   // share of pairs with r_better > r_worse (end scores)
  MeanStd reward;          // over all 2B end scores
  double better_mean = 0.0, worse_mean = 0.0;
  // d loss / d score: [B] for sequence-wise (end scores), [B·L] for token-wise.
  std::vector<float> grad_better, grad_worse;
};

RewardLoss reward_loss(std::span<const float> r_better, std::span<const float> r_worse,
                       double regularization = 0.001);

// ---- Cost model -----------------------------------------------------------------------------
struct CostLoss {
  double loss = 0.0;
  double ranking = 0.0;    // mean -log σ(c_u - c_s)
  double sign = 0.0;       // mean of the two sign terms (summed per pair)
  double l2 = 0.0;
  double accuracy = 0.0;       // share of pairs with c_unsafer > c_safer
  double sign_accuracy = 0.0;  // share of the 2B responses whose (c > 0) matches "unsafe"
  MeanStd cost;
  double safer_mean = 0.0, unsafer_mean = 0.0;
  // Pairs whose safer response is labelled unsafe while the unsafer one is labelled safe: the
  // labels contradict the ranking. They still contribute to the loss (as the data says); the
  // trainer reports them.
  std::vector<int64_t> inconsistent_pairs;
  std::vector<float> grad_safer, grad_unsafer;
};

// is_*_safe: 1 = labelled safe (sign -1), 0 = labelled unsafe (sign +1).
CostLoss cost_loss(std::span<const float> c_safer, std::span<const float> c_unsafer,
                   std::span<const uint8_t> is_safer_safe, std::span<const uint8_t> is_unsafer_safe,
                   double regularization = 0.001);

// ---- Token-wise variants --------------------------------------------------------------------
// Per-token scores and token ids of both sides as [B, L] row-major (one shared L: the pair is
// padded to a common length), and the end index (last valid position) of each sequence. The
// window of pair i is [d_i, max(end_b_i, end_w_i)] where d_i is the first position at which the
// token ids differ; identical sequences, or a first difference past the end, are an Error
// naming the pair. Gradients are [B·L], zero outside each window.
struct TokenPairBatch {
  int64_t batch = 0, length = 0;
  std::span<const float> scores_a, scores_b;  // better/safer, worse/unsafer
  std::span<const int32_t> ids_a, ids_b;
  std::span<const int64_t> end_a, end_b;
};

RewardLoss reward_loss_tokenwise(const TokenPairBatch& pairs, double regularization = 0.001);
CostLoss cost_loss_tokenwise(const TokenPairBatch& pairs, std::span<const uint8_t> is_safer_safe,
                             std::span<const uint8_t> is_unsafer_safe,
                             double regularization = 0.001);

// Last position whose mask is non-zero in each row of a [rows, cols] mask: the end index used
// for end scores. A row with no valid position is an Error naming the row.
std::vector<int64_t> last_valid_index(std::span<const uint8_t> mask, int64_t rows, int64_t cols);

}  // namespace beaver::train
