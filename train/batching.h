// Tokenized examples → padded batches on the model's device, in the layouts the stages use
// (docs/formats.md, "Tokenizer setup", padding side):
//
//   SFT         right padding; each row is BOS + prompt + answer + EOS truncated to
//               max_length; targets[b,t] = tokens[b,t+1] when position t+1 is an answer token
//               (EOS included) inside the row, else -100: the loss covers the answer only.
//   preference  2B rows for B pairs: rows 0..B-1 the better/safer sequences, rows B..2B-1 the
//               worse/unsafer ones, right padding; end[b] = the row's last valid index, where
//               the end score is read. A sequence truncated to max_length loses its EOS; its
//               end score is then taken at its last kept token.
//   prompt-only left padding (rollouts): row b's tokens sit at [S - len_b, S), positions count
//               from 0 at the first valid token.
//
// Rows are as wide as the longest (truncated) row of the batch, not max_length, so short
// batches cost less. Pad slots hold pad_id with position 0 and are never attended to.
// Every token id is validated against the vocabulary size (errors name the example's origin).
// Host copies of tokens and ranges are kept, since the losses (token-wise windows, end
// indices) and the metrics need them.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "csrc/tensor.h"
#include "model/llama.h"

namespace beaver::model {
class Tokenizer;
}

namespace beaver::train {

// One tokenized training text. ids include BOS and, unless the text was truncated, EOS;
// label_begin is the index of the first answer token (the prompt's token count, BOS included).
struct SftSample {
  std::vector<int32_t> ids;
  int64_t label_begin = 0;
  std::string origin;  // "path:line", for error messages
};

// One tokenized pair: a = better/safer, b = worse/unsafer (each BOS + prompt + answer + EOS).
struct PairSample {
  std::vector<int32_t> a, b;
  uint8_t a_safe = 1, b_safe = 1;  // cost model: response labelled safe (1) or unsafe (0)
  std::string origin;
};

struct PromptSample {
  std::vector<int32_t> ids;  // BOS + formatted prompt
  std::string origin;
};

// Tokenization with the conversation template (safe-rlhf's preprocessing): the training text is
// format_prompt(prompt) + answer + "</s>", encoded with BOS; label_begin = the token count of
// BOS + format_prompt(prompt).
SftSample tokenize_sft(const model::Tokenizer& tok, const std::string& prompt,
                       const std::string& answer, const std::string& origin = "");
PairSample tokenize_pair(const model::Tokenizer& tok, const std::string& prompt,
                         const std::string& a, const std::string& b, const std::string& origin = "");
PromptSample tokenize_prompt(const model::Tokenizer& tok, const std::string& prompt,
                             const std::string& origin = "");

struct BatchLayout {
  int64_t max_length = 512;  // --max_length: rows are truncated to this many tokens
  int32_t pad_id = 0;
  int64_t vocab_size = 0;    // every id must be in [0, vocab_size)
  Device device = Device::CPU;
  // When set (it must be, for a CUDA device), uploads are queued on this context's stream
  // (Context::copy), in order with the kernels that read the batch.
  const Context* context = nullptr;
};

// A padded batch: device tensors plus host copies.
struct PaddedBatch {
  int64_t rows = 0, width = 0;
  OwnedTensor tokens, ranges, positions;  // i32 [rows, width], [rows, 2], [rows, width]
  std::vector<int32_t> host_tokens;        // [rows * width]
  std::vector<int32_t> host_ranges;        // [rows * 2]: begin, end
  std::vector<int64_t> end_index;          // [rows]: end - 1 (the end-score position)
  int64_t valid_tokens = 0;                // sum of row lengths
  model::Batch batch() const { return {tokens, ranges, positions}; }
};

struct SftBatch : PaddedBatch {
  OwnedTensor targets;               // i32 [rows, width], -100 where no loss
  std::vector<int32_t> host_targets;
  int64_t label_tokens = 0;          // targets that are not -100
};

struct PairBatch : PaddedBatch {
  int64_t pairs = 0;                 // rows = 2 * pairs
  std::vector<uint8_t> a_safe, b_safe;
};

// An SFT sample whose answer is entirely truncated away has no target: an Error naming it.
SftBatch make_sft_batch(std::span<const SftSample> samples, const BatchLayout& layout);
PairBatch make_pair_batch(std::span<const PairSample> pairs, const BatchLayout& layout);
// Left padding. A prompt of max_length tokens or more is an Error naming it: a rollout needs
// room to answer (filter such prompts before batching).
PaddedBatch make_prompt_batch(std::span<const PromptSample> prompts, const BatchLayout& layout);

}  // namespace beaver::train
