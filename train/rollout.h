// Rollout bookkeeping for PPO: how sampled responses become one padded batch, and the
// gradient-free passes over it (per-token log-probs, end scores, critic values).
//
// Layout: row b is its prompt (m_b tokens) followed at once by its response (n_b tokens,
// counting the EOS that stopped it, when one did), right-padded to the batch width
// S = max_b (m_b + n_b); its valid tokens are [0, m_b + n_b) and positions count from 0. The
// reference left-pads the prompts to a common column P and starts every response there, which
// makes a batch max(m) + max(n) wide; each row's tokens, positions and attended keys are the
// same in both layouts (the model sees a row only through its range), so only the padding
// differs: with prompts of 55 tokens on average and responses of 22, the batch is about a
// quarter narrower.
//
// Per-token arrays follow train/ppo.h: [B, S] row-major, position t holding action t (the
// token at t + 1, emitted from position t). The action mask covers columns [m_b - 1,
// m_b - 1 + n_b) of row b: every generated token including the EOS. A row's `end` (ppo.h
// response_ends) is then the action that emitted its EOS, or its last token when the response
// was truncated by max_length. Score models see the whole row, so their end score is the score
// at the EOS token (or at the last token of a truncated response): the last valid position of
// the row.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "csrc/tensor.h"
#include "model/engine.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "train/ppo.h"

namespace beaver::train {

struct RolloutBatch {
  int64_t batch = 0, width = 0;   // B, S
  std::vector<int32_t> tokens;    // [B, S]; padding holds pad_id (never attended)
  std::vector<int32_t> ranges;    // [B, 2] valid [begin, end) per row
  std::vector<int32_t> positions; // [B, S]
  std::vector<int32_t> targets;   // [B, S]: the sampled token at t + 1 on the mask, else -100
  std::vector<uint8_t> mask;      // [B, S] action mask
  std::vector<int64_t> prompt_len, response_len;  // m_b, n_b (n_b counts the EOS)
  std::vector<uint8_t> stopped_at_eos;
  std::vector<std::vector<int32_t>> responses;    // generated tokens, EOS excluded

  TokenDims dims() const { return TokenDims{batch, width}; }
  // Response tokens in the batch (EOS included), the training token count of one pass.
  int64_t action_count() const;
  // Full sequence tokens (prompt + response + EOS) summed over rows.
  int64_t sequence_tokens() const;
};

// Builds the padded batch from prompts and their generations. eos_id is appended to the
// responses that stopped at it. Every prompt must be non-empty and every row must hold at
// least one action (a generation that is empty and did not stop at EOS is an Error).
RolloutBatch build_rollout(const std::vector<std::vector<int32_t>>& prompts,
                           const std::vector<model::Generation>& generations, int32_t eos_id,
                           int32_t pad_id);

// The reference masks tokens equal to unk or pad out of a sampled sequence's attention mask,
// and so out of the actions: clears the action (mask 0, target ignored) of every sampled token
// in `ids` (unk, and pad when it is not EOS), so that it earns no advantage and takes no
// gradient; the row's end moves to its last remaining action. Beaver's attention has no
// per-token mask, so the later tokens still see such a token (a documented deviation). A row
// left with no action keeps its last one. Returns the number of actions cleared.
int64_t mask_special_actions(RolloutBatch& r, std::span<const int32_t> ids);

// A padded batch uploaded to a device, kept alive with its tensors.
class DeviceBatch {
 public:
  // Uploads are queued on ctx's stream (Context::copy).
  DeviceBatch(const Context& ctx, int64_t batch, int64_t width, std::span<const int32_t> tokens,
              std::span<const int32_t> ranges, std::span<const int32_t> positions);
  model::Batch batch() const { return model::Batch{tokens_, ranges_, positions_}; }

 private:
  OwnedTensor tokens_, ranges_, positions_;
};
DeviceBatch upload(const Context& ctx, const RolloutBatch& r);

// log π(a_t) of the sampled tokens at every action position ([B, S]; 0 off the mask). The
// model needs an LM head; runs forward() (its activations then belong to this batch).
std::vector<float> rollout_logprobs(model::LlamaModel& m, const RolloutBatch& r);
// Same, on an already uploaded batch (targets uploaded by the caller: i32 [B, S]).
std::vector<float> rollout_logprobs(model::LlamaModel& m, const model::Batch& b,
                                    const Tensor& targets);
// End scores [B] of a score model: the score at each row's last valid token.
std::vector<float> rollout_end_scores(model::LlamaModel& m, const RolloutBatch& r);
std::vector<float> rollout_end_scores(model::LlamaModel& m, const model::Batch& b);
// Scores at every position [B, S] of a score model (critic values; only the mask is used).
std::vector<float> rollout_values(model::LlamaModel& m, const RolloutBatch& r);
std::vector<float> rollout_values(model::LlamaModel& m, const model::Batch& b);

// The tokenizer.model of a policy folder, with safe-rlhf's added <pad> when the model's
// vocabulary is one larger; errors name the folder.
model::Tokenizer load_policy_tokenizer(const std::string& model_dir);
// Text of generated ids; ids past the tokenizer's vocabulary (a padded model vocabulary)
// print as <unk> instead of failing.
std::string decode_response(const model::Tokenizer& tok, std::vector<int32_t> ids);

// Host vector → tensor of the given shape on ctx's device (owned), queued on ctx's stream.
template <typename T>
OwnedTensor to_device(const Context& ctx, const std::vector<T>& host, Shape shape) {
  OwnedTensor t(dtype_of<T>::value, shape, ctx.device());
  ctx.copy(t, Tensor(const_cast<T*>(host.data()), dtype_of<T>::value, shape, Device::CPU));
  return t;
}

}  // namespace beaver::train
