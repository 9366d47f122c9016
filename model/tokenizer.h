// The LLaMA tokenizer (a sentencepiece model, tokenizer.model) as the reference sets it up.
// (The conversation template strings live in train/template.h.)
//
// Special tokens: <s> (BOS), </s> (EOS) and <unk> come from the sentencepiece model; LLaMA has
// no pad token, so add_pad_token() appends <pad> with id = the old vocabulary size (LLaMA:
// 32000 → 32001) and grow_rows_with_mean() gives the embedding / LM head the matching new row,
// set to the mean of the existing rows (what safe-rlhf does when it resizes the model).
// Text may contain the literal special-token strings (the multi-turn template writes "</s>"
// after each earlier answer): encode() splits on them, encodes the pieces between with
// sentencepiece and inserts the special ids, as the HF slow LLaMA tokenizer does.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "csrc/tensor.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace beaver::model {

class Tokenizer {
 public:
  // Loads a tokenizer.model file; throws naming the path and sentencepiece's reason.
  static Tokenizer from_file(const std::string& path);
  // Loads a serialized ModelProto (what the trainer produces in memory).
  static Tokenizer from_serialized(const std::string& model_proto, const std::string& what);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Token ids of text: BOS first when add_bos, EOS last when add_eos. Literal "<s>", "</s>"
  // (and "<pad>" once added) in the text become their ids.
  std::vector<int32_t> encode(std::string_view text, bool add_bos = true,
                              bool add_eos = false) const;
  // Text of ids; special tokens (BOS, EOS, pad, unk's control role) are dropped. Throws
  // naming the first id outside the vocabulary.
  std::string decode(std::span<const int32_t> ids) const;
  // The piece string of one id ("▁the", "<s>", "<pad>").
  std::string piece(int32_t id) const;

  int32_t bos_id() const { return bos_; }
  int32_t eos_id() const { return eos_; }
  int32_t unk_id() const { return unk_; }
  int32_t pad_id() const { return pad_; }  // -1 until add_pad_token()
  // Vocabulary size including an added <pad>.
  int32_t vocab_size() const { return sp_size_ + (pad_ >= 0 ? 1 : 0); }
  // Adds <pad> (id = sentencepiece vocabulary size) unless the model already has a pad
  // piece; returns the pad id either way.
  int32_t add_pad_token();
  // True for BOS, EOS, pad: the tokens an attention mask or a decoder skips.
  bool is_special(int32_t id) const { return id == bos_ || id == eos_ || (pad_ >= 0 && id == pad_); }

 private:
  Tokenizer();
  void init_ids();
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  int32_t sp_size_ = 0, bos_ = -1, eos_ = -1, unk_ = -1, pad_ = -1;
  bool pad_from_model_ = false;
};

// Trains a sentencepiece model on in-memory lines (BPE, unk 0, BOS 1, EOS 2, no pad, identity
// normalisation: the LLaMA id layout) and returns the serialized model. For tests and toy runs.
std::string train_sentencepiece(const std::vector<std::string>& lines, int vocab_size,
                                const std::string& model_type = "bpe");

// Copies table rows src [V_old, H] (any float dtype, any device) into dst [V_new, H]
// (V_new >= V_old, any float dtype, any device) and sets rows [V_old, V_new) to the mean of
// the V_old source rows (summed in fp64 in row order, then rounded once).
void grow_rows_with_mean(const Tensor& src, const Tensor& dst);

}  // namespace beaver::model
