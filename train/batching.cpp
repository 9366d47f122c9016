// Padded batch layouts for SFT, preference pairs and prompts (batching.h).
#include "train/batching.h"

#include <algorithm>

#include "csrc/error.h"
#include "csrc/ops/logprob.h"
#include "model/tokenizer.h"
#include "train/template.h"

namespace beaver::train {

namespace {

void check_ids(std::span<const int32_t> ids, const BatchLayout& L, const std::string& origin,
               const char* what) {
  BEAVER_CHECK(!ids.empty(), what, " ", origin.empty() ? std::string("(no origin)") : origin,
               ": empty token sequence");
  for (size_t i = 0; i < ids.size(); ++i)
    BEAVER_CHECK(ids[i] >= 0 && ids[i] < L.vocab_size, what, " ",
                 origin.empty() ? std::string("(no origin)") : origin, ": token ", i, " has id ",
                 ids[i], " outside the vocabulary [0, ", L.vocab_size, ")");
}

void check_layout(const BatchLayout& L, size_t n, const char* what) {
  BEAVER_CHECK(n > 0, what, ": empty batch");
  BEAVER_CHECK(L.max_length >= 2, what, ": max_length must be >= 2, got ", L.max_length);
  BEAVER_CHECK(L.vocab_size > 0, what, ": vocab_size must be set");
  BEAVER_CHECK(L.pad_id >= 0 && L.pad_id < L.vocab_size, what, ": pad id ", L.pad_id,
               " outside the vocabulary [0, ", L.vocab_size, ")");
  BEAVER_CHECK(L.device == Device::CPU || (L.context && L.context->device() == L.device), what,
               ": a batch for ", device_name(L.device),
               " needs the layout's context (uploads are ordered on its stream)");
}

// Host vector -> batch tensor, on the layout's context stream when there is one.
void put(const BatchLayout& L, const Tensor& dst, const void* host) {
  const Tensor src(const_cast<void*>(host), dst.dtype, dst.shape, Device::CPU);
  if (L.context)
    L.context->copy(dst, src);
  else
    copy_tensor(dst, src);
}

// Lays rows out right-padded (left = false) or left-padded, fills the host vectors and uploads.
void fill(PaddedBatch& pb, const std::vector<std::span<const int32_t>>& rows, int64_t width,
          bool left, const BatchLayout& L) {
  const int64_t R = int64_t(rows.size());
  pb.rows = R;
  pb.width = width;
  pb.host_tokens.assign(size_t(R * width), L.pad_id);
  pb.host_ranges.assign(size_t(2 * R), 0);
  pb.end_index.assign(size_t(R), 0);
  std::vector<int32_t> pos(size_t(R * width), 0);
  pb.valid_tokens = 0;
  for (int64_t r = 0; r < R; ++r) {
    const int64_t n = int64_t(rows[size_t(r)].size());
    const int64_t begin = left ? width - n : 0;
    for (int64_t i = 0; i < n; ++i) {
      pb.host_tokens[size_t(r * width + begin + i)] = rows[size_t(r)][size_t(i)];
      pos[size_t(r * width + begin + i)] = int32_t(i);
    }
    pb.host_ranges[size_t(2 * r)] = int32_t(begin);
    pb.host_ranges[size_t(2 * r + 1)] = int32_t(begin + n);
    pb.end_index[size_t(r)] = begin + n - 1;
    pb.valid_tokens += n;
  }
  pb.tokens = OwnedTensor(DType::I32, Shape{R, width}, L.device);
  pb.ranges = OwnedTensor(DType::I32, Shape{R, 2}, L.device);
  pb.positions = OwnedTensor(DType::I32, Shape{R, width}, L.device);
  put(L, pb.tokens, pb.host_tokens.data());
  put(L, pb.ranges, pb.host_ranges.data());
  put(L, pb.positions, pos.data());
}

std::span<const int32_t> truncated(const std::vector<int32_t>& ids, int64_t max_length) {
  return {ids.data(), size_t(std::min<int64_t>(int64_t(ids.size()), max_length))};
}

}  // namespace

SftSample tokenize_sft(const model::Tokenizer& tok, const std::string& prompt,
                       const std::string& answer, const std::string& origin) {
  const std::string p = format_prompt(prompt);
  SftSample s;
  s.ids = tok.encode(format_training_text(p, answer), /*add_bos=*/true);
  s.label_begin = int64_t(tok.encode(p, true).size());
  s.origin = origin;
  return s;
}

PairSample tokenize_pair(const model::Tokenizer& tok, const std::string& prompt,
                         const std::string& a, const std::string& b, const std::string& origin) {
  const std::string p = format_prompt(prompt);
  PairSample s;
  s.a = tok.encode(format_training_text(p, a), true);
  s.b = tok.encode(format_training_text(p, b), true);
  s.origin = origin;
  return s;
}

PromptSample tokenize_prompt(const model::Tokenizer& tok, const std::string& prompt,
                             const std::string& origin) {
  return PromptSample{tok.encode(format_prompt(prompt), true), origin};
}

SftBatch make_sft_batch(std::span<const SftSample> samples, const BatchLayout& L) {
  check_layout(L, samples.size(), "make_sft_batch");
  std::vector<std::span<const int32_t>> rows;
  int64_t width = 0;
  for (const auto& s : samples) {
    check_ids(s.ids, L, s.origin, "make_sft_batch: example");
    BEAVER_CHECK(s.label_begin >= 1 && s.label_begin <= int64_t(s.ids.size()),
                 "make_sft_batch: example ", s.origin, ": label_begin ", s.label_begin,
                 " outside [1, ", s.ids.size(), "]");
    BEAVER_CHECK(s.label_begin < L.max_length, "make_sft_batch: example ", s.origin,
                 ": the prompt alone has ", s.label_begin, " tokens, max_length is ",
                 L.max_length, ", so no answer token is left to learn from");
    rows.push_back(truncated(s.ids, L.max_length));
    width = std::max<int64_t>(width, int64_t(rows.back().size()));
  }
  SftBatch sb;
  fill(sb, rows, width, false, L);
  const int64_t R = sb.rows;
  sb.host_targets.assign(size_t(R * width), ops::kIgnoreIndex);
  sb.label_tokens = 0;
  for (int64_t r = 0; r < R; ++r) {
    const int64_t n = int64_t(rows[size_t(r)].size());
    const int64_t first = samples[size_t(r)].label_begin;  // first answer token
    for (int64_t t = first - 1; t + 1 < n; ++t) {
      sb.host_targets[size_t(r * width + t)] = rows[size_t(r)][size_t(t + 1)];
      ++sb.label_tokens;
    }
  }
  sb.targets = OwnedTensor(DType::I32, Shape{R, width}, L.device);
  put(L, sb.targets, sb.host_targets.data());
  return sb;
}

PairBatch make_pair_batch(std::span<const PairSample> pairs, const BatchLayout& L) {
  check_layout(L, pairs.size(), "make_pair_batch");
  const size_t B = pairs.size();
  std::vector<std::span<const int32_t>> rows(2 * B);
  int64_t width = 0;
  PairBatch pb;
  pb.pairs = int64_t(B);
  for (size_t i = 0; i < B; ++i) {
    check_ids(pairs[i].a, L, pairs[i].origin, "make_pair_batch: first response of pair");
    check_ids(pairs[i].b, L, pairs[i].origin, "make_pair_batch: second response of pair");
    rows[i] = truncated(pairs[i].a, L.max_length);
    rows[B + i] = truncated(pairs[i].b, L.max_length);
    width = std::max({width, int64_t(rows[i].size()), int64_t(rows[B + i].size())});
    pb.a_safe.push_back(pairs[i].a_safe);
    pb.b_safe.push_back(pairs[i].b_safe);
  }
  fill(pb, rows, width, false, L);
  return pb;
}

PaddedBatch make_prompt_batch(std::span<const PromptSample> prompts, const BatchLayout& L) {
  check_layout(L, prompts.size(), "make_prompt_batch");
  std::vector<std::span<const int32_t>> rows;
  int64_t width = 0;
  for (const auto& p : prompts) {
    check_ids(p.ids, L, p.origin, "make_prompt_batch: prompt");
    BEAVER_CHECK(int64_t(p.ids.size()) < L.max_length, "make_prompt_batch: prompt ", p.origin,
                 " has ", p.ids.size(), " tokens, max_length is ", L.max_length,
                 ": no room left for a response");
    rows.emplace_back(p.ids);
    width = std::max<int64_t>(width, int64_t(p.ids.size()));
  }
  PaddedBatch pb;
  fill(pb, rows, width, true, L);
  return pb;
}

}  // namespace beaver::train
