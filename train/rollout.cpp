// Rollout batches and the gradient-free passes over them (see rollout.h for the layout).
#include "train/rollout.h"

#include <algorithm>
#include <filesystem>

#include "csrc/error.h"
#include "csrc/ops/logprob.h"
#include "model/loader.h"

namespace beaver::train {

model::Tokenizer load_policy_tokenizer(const std::string& dir) {
  model::Tokenizer tok =
      model::load_model_tokenizer(dir, model::checkpoint_config(dir), "the policy");
  BEAVER_CHECK(tok.eos_id() >= 0, "the tokenizer of ", dir, " has no EOS token");
  return tok;
}

std::string decode_response(const model::Tokenizer& tok, std::vector<int32_t> ids) {
  for (auto& id : ids)
    if (id >= tok.vocab_size()) id = tok.unk_id();
  return tok.decode(ids);
}

int64_t RolloutBatch::action_count() const {
  int64_t n = 0;
  for (int64_t x : response_len) n += x;
  return n;
}

int64_t RolloutBatch::sequence_tokens() const {
  int64_t n = 0;
  for (int64_t b = 0; b < batch; ++b) n += prompt_len[size_t(b)] + response_len[size_t(b)];
  return n;
}

RolloutBatch build_rollout(const std::vector<std::vector<int32_t>>& prompts,
                           const std::vector<model::Generation>& gens, int32_t eos_id,
                           int32_t pad_id) {
  BEAVER_CHECK(!prompts.empty(), "build_rollout: no prompts");
  BEAVER_CHECK(prompts.size() == gens.size(), "build_rollout: ", prompts.size(),
               " prompts but ", gens.size(), " generations");
  RolloutBatch r;
  r.batch = int64_t(prompts.size());
  for (size_t b = 0; b < prompts.size(); ++b) {
    BEAVER_CHECK(!prompts[b].empty(), "build_rollout: prompt ", b, " is empty");
    const int64_t n = int64_t(gens[b].tokens.size()) + (gens[b].stopped_at_eos ? 1 : 0);
    BEAVER_CHECK(n > 0, "build_rollout: generation ", b,
                 " is empty and did not stop at EOS: it has no action to learn from");
    r.width = std::max<int64_t>(r.width, int64_t(prompts[b].size()) + n);
  }
  const int64_t B = r.batch, S = r.width;
  r.tokens.assign(size_t(B * S), pad_id);
  r.positions.assign(size_t(B * S), 0);
  r.targets.assign(size_t(B * S), ops::kIgnoreIndex);
  r.mask.assign(size_t(B * S), 0);
  r.ranges.assign(size_t(2 * B), 0);
  r.prompt_len.resize(size_t(B));
  r.response_len.resize(size_t(B));
  r.stopped_at_eos.resize(size_t(B));
  r.responses.resize(size_t(B));
  for (int64_t b = 0; b < B; ++b) {
    const auto& p = prompts[size_t(b)];
    const auto& g = gens[size_t(b)];
    const int64_t m = int64_t(p.size());
    std::vector<int32_t> resp = g.tokens;
    if (g.stopped_at_eos) resp.push_back(eos_id);
    const int64_t n = int64_t(resp.size()), end = m + n;
    int32_t* row = r.tokens.data() + b * S;
    std::copy(p.begin(), p.end(), row);
    std::copy(resp.begin(), resp.end(), row + m);
    for (int64_t t = 0; t < end; ++t) r.positions[size_t(b * S + t)] = int32_t(t);
    for (int64_t t = m - 1; t < end - 1; ++t) {
      r.mask[size_t(b * S + t)] = 1;
      r.targets[size_t(b * S + t)] = row[t + 1];
    }
    r.ranges[size_t(2 * b)] = 0;
    r.ranges[size_t(2 * b + 1)] = int32_t(end);
    r.prompt_len[size_t(b)] = m;
    r.response_len[size_t(b)] = n;
    r.stopped_at_eos[size_t(b)] = g.stopped_at_eos;
    r.responses[size_t(b)] = g.tokens;
  }
  return r;
}

int64_t mask_special_actions(RolloutBatch& r, std::span<const int32_t> ids) {
  int64_t cleared = 0;
  for (int64_t b = 0; b < r.batch; ++b) {
    int64_t kept = 0, last = -1;
    std::vector<int64_t> hit;
    for (int64_t t = 0; t < r.width; ++t) {
      const size_t k = size_t(b * r.width + t);
      if (!r.mask[k]) continue;
      last = t;
      if (std::find(ids.begin(), ids.end(), r.targets[k]) != ids.end())
        hit.push_back(t);
      else
        ++kept;
    }
    for (int64_t t : hit) {
      if (kept == 0 && t == last) break;  // the row keeps one action
      const size_t k = size_t(b * r.width + t);
      r.mask[k] = 0;
      r.targets[k] = ops::kIgnoreIndex;
      ++cleared;
    }
  }
  return cleared;
}

DeviceBatch::DeviceBatch(const Context& ctx, int64_t B, int64_t S, std::span<const int32_t> tokens,
                         std::span<const int32_t> ranges, std::span<const int32_t> positions) {
  BEAVER_CHECK(int64_t(tokens.size()) == B * S && int64_t(positions.size()) == B * S &&
                   int64_t(ranges.size()) == 2 * B,
               "DeviceBatch: ", tokens.size(), " tokens, ", positions.size(), " positions and ",
               ranges.size(), " range values for a [", B, ", ", S, "] batch");
  auto put = [&ctx](std::span<const int32_t> v, Shape s) {
    OwnedTensor t(DType::I32, s, ctx.device());
    ctx.copy(t, Tensor(const_cast<int32_t*>(v.data()), DType::I32, s, Device::CPU));
    return t;
  };
  tokens_ = put(tokens, {B, S});
  ranges_ = put(ranges, {B, 2});
  positions_ = put(positions, {B, S});
}

DeviceBatch upload(const Context& ctx, const RolloutBatch& r) {
  return DeviceBatch(ctx, r.batch, r.width, r.tokens, r.ranges, r.positions);
}

std::vector<float> rollout_logprobs(model::LlamaModel& m, const model::Batch& b,
                                    const Tensor& targets) {
  const int64_t B = b.tokens.size(0), S = b.tokens.size(1);
  m.forward(b);
  OwnedTensor logp(DType::F32, {B, S}, m.context().device());
  m.token_logprobs(targets, logp);
  return to_host_f32(logp);
}

std::vector<float> rollout_logprobs(model::LlamaModel& m, const RolloutBatch& r) {
  const DeviceBatch db = upload(m.context(), r);
  const OwnedTensor targets = to_device(m.context(), r.targets, {r.batch, r.width});
  return rollout_logprobs(m, db.batch(), targets);
}

std::vector<float> rollout_end_scores(model::LlamaModel& m, const model::Batch& b) {
  const int64_t B = b.tokens.size(0), S = b.tokens.size(1);
  const Device dev = m.context().device();
  m.forward(b);
  OwnedTensor scores(DType::F32, {B, S}, dev), end(DType::F32, {B}, dev);
  m.scores(scores, end);
  return to_host_f32(end);
}

std::vector<float> rollout_end_scores(model::LlamaModel& m, const RolloutBatch& r) {
  const DeviceBatch db = upload(m.context(), r);
  return rollout_end_scores(m, db.batch());
}

std::vector<float> rollout_values(model::LlamaModel& m, const model::Batch& b) {
  const int64_t B = b.tokens.size(0), S = b.tokens.size(1);
  m.forward(b);
  OwnedTensor scores(DType::F32, {B, S}, m.context().device());
  m.scores(scores, Tensor());
  return to_host_f32(scores);
}

std::vector<float> rollout_values(model::LlamaModel& m, const RolloutBatch& r) {
  const DeviceBatch db = upload(m.context(), r);
  return rollout_values(m, db.batch());
}

}  // namespace beaver::train
