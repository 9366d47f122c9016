// Batch layouts (train/batching.h): right padding with answer-only labels for SFT, 2B pair rows
// with end indices (and truncation that drops EOS), left padding for prompts, validation, and
// the template-based tokenization.
#include <gtest/gtest.h>

#include <vector>

#include "csrc/ops/logprob.h"
#include "format_fixtures.h"
#include "model/tokenizer.h"
#include "train/batching.h"
#include "train_fixtures.h"

namespace beaver {
namespace {

constexpr int32_t kPad = 99;
constexpr int32_t kIgn = ops::kIgnoreIndex;

train::BatchLayout layout(int64_t max_length) {
  train::BatchLayout L;
  L.max_length = max_length;
  L.pad_id = kPad;
  L.vocab_size = 100;
  return L;
}

std::vector<int32_t> host_i32(const Tensor& t) {
  std::vector<int32_t> v(size_t(t.numel()));
  copy_tensor(Tensor(v.data(), DType::I32, t.shape, Device::CPU), t);
  return v;
}

TEST(Batching, SftRightPaddingAndAnswerLabels) {
  // BOS=1, prompt 10 11, answer 20 21, EOS=2; label_begin = 3 (BOS + 2 prompt tokens).
  std::vector<train::SftSample> s = {{{1, 10, 11, 20, 21, 2}, 3, "a:1"},
                                     {{1, 12, 30, 2}, 2, "a:2"}};
  const train::SftBatch b = train::make_sft_batch(s, layout(32));
  ASSERT_EQ(b.rows, 2);
  ASSERT_EQ(b.width, 6);
  EXPECT_EQ(host_i32(b.tokens), (std::vector<int32_t>{1, 10, 11, 20, 21, 2,  //
                                                      1, 12, 30, 2, kPad, kPad}));
  EXPECT_EQ(host_i32(b.ranges), (std::vector<int32_t>{0, 6, 0, 4}));
  EXPECT_EQ(host_i32(b.positions), (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 0, 0}));
  // targets[t] = tokens[t+1] where t+1 is an answer token (EOS included).
  EXPECT_EQ(host_i32(b.targets), (std::vector<int32_t>{kIgn, kIgn, 20, 21, 2, kIgn,  //
                                                       kIgn, 30, 2, kIgn, kIgn, kIgn}));
  EXPECT_EQ(b.label_tokens, 5);
  EXPECT_EQ(b.valid_tokens, 10);
}

TEST(Batching, SftTruncationDropsEos) {
  std::vector<train::SftSample> s = {{{1, 10, 11, 20, 21, 22, 2}, 3, "a:1"}};
  const train::SftBatch b = train::make_sft_batch(s, layout(5));
  ASSERT_EQ(b.width, 5);
  EXPECT_EQ(host_i32(b.tokens), (std::vector<int32_t>{1, 10, 11, 20, 21}));
  EXPECT_EQ(host_i32(b.targets), (std::vector<int32_t>{kIgn, kIgn, 20, 21, kIgn}));
  // A prompt that fills max_length leaves nothing to learn: an error naming the example.
  test::expect_error([&] { train::make_sft_batch(s, layout(3)); }, {"a:1", "max_length"});
}

TEST(Batching, PairRowsAndEndIndices) {
  std::vector<train::PairSample> p(2);
  p[0].a = {1, 5, 6, 2};
  p[0].b = {1, 5, 7, 8, 9, 2};
  p[1].a = {1, 4, 2};
  p[1].b = {1, 4, 3, 2};
  p[1].a_safe = 1;
  p[1].b_safe = 0;
  const train::PairBatch b = train::make_pair_batch(p, layout(32));
  ASSERT_EQ(b.pairs, 2);
  ASSERT_EQ(b.rows, 4);
  ASSERT_EQ(b.width, 6);
  // Rows: better/safer of pair 0, pair 1, then worse/unsafer of pair 0, pair 1.
  EXPECT_EQ(b.host_tokens, (std::vector<int32_t>{1, 5, 6, 2, kPad, kPad,  //
                                                 1, 4, 2, kPad, kPad, kPad,  //
                                                 1, 5, 7, 8, 9, 2,  //
                                                 1, 4, 3, 2, kPad, kPad}));
  EXPECT_EQ(b.end_index, (std::vector<int64_t>{3, 2, 5, 3}));
  EXPECT_EQ(host_i32(b.ranges), (std::vector<int32_t>{0, 4, 0, 3, 0, 6, 0, 4}));
  EXPECT_EQ(b.b_safe, (std::vector<uint8_t>{1, 0}));
  // Every end index points at an EOS here.
  for (int64_t r = 0; r < b.rows; ++r) EXPECT_EQ(b.host_tokens[size_t(r * 6 + b.end_index[size_t(r)])], 2);
}

TEST(Batching, PairTruncationEndsAtLastKeptToken) {
  std::vector<train::PairSample> p(1);
  p[0].a = {1, 5, 6, 7, 8, 2};
  p[0].b = {1, 5, 2};
  const train::PairBatch b = train::make_pair_batch(p, layout(4));
  ASSERT_EQ(b.width, 4);
  EXPECT_EQ(b.end_index, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(b.host_tokens[3], 7);  // EOS lost: the end score is read at the last kept token
  EXPECT_EQ(b.host_tokens[4 + 2], 2);
}

TEST(Batching, PromptsLeftPadded) {
  std::vector<train::PromptSample> p = {{{1, 10, 11, 12}, "p:1"}, {{1, 20}, "p:2"}};
  const train::PaddedBatch b = train::make_prompt_batch(p, layout(8));
  ASSERT_EQ(b.width, 4);
  EXPECT_EQ(b.host_tokens, (std::vector<int32_t>{1, 10, 11, 12, kPad, kPad, 1, 20}));
  EXPECT_EQ(host_i32(b.ranges), (std::vector<int32_t>{0, 4, 2, 4}));
  EXPECT_EQ(host_i32(b.positions), (std::vector<int32_t>{0, 1, 2, 3, 0, 0, 0, 1}));
  EXPECT_EQ(b.end_index, (std::vector<int64_t>{3, 3}));
  test::expect_error([&] { train::make_prompt_batch(p, layout(4)); }, {"p:1", "no room"});
}

TEST(Batching, Validation) {
  std::vector<train::SftSample> bad = {{{1, 10, 100, 2}, 2, "data.json:7"}};
  test::expect_error([&] { train::make_sft_batch(bad, layout(16)); },
                     {"data.json:7", "id 100", "vocabulary"});
  std::vector<train::PairSample> neg(1);
  neg[0].a = {1, -3, 2};
  neg[0].b = {1, 2};
  neg[0].origin = "pairs.jsonl:3";
  test::expect_error([&] { train::make_pair_batch(neg, layout(16)); }, {"pairs.jsonl:3", "-3"});
  std::vector<train::PairSample> empty(1);
  empty[0].a = {1, 2};
  test::expect_error([&] { train::make_pair_batch(empty, layout(16)); }, {"empty"});
  test::expect_error([&] { train::make_sft_batch({}, layout(16)); }, {"empty batch"});
  auto L = layout(16);
  L.pad_id = 100;
  std::vector<train::SftSample> ok = {{{1, 10, 2}, 1, "x"}};
  test::expect_error([&] { train::make_sft_batch(ok, L); }, {"pad id"});
}

TEST(Batching, TemplateTokenization) {
  const std::string proto = model::train_sentencepiece(test::tiny_corpus(), 120);
  const model::Tokenizer tok = model::Tokenizer::from_serialized(proto, "tiny");
  const train::SftSample s = train::tokenize_sft(tok, "tell me about cats", " cats are warm.");
  const auto prompt = tok.encode("BEGINNING OF CONVERSATION: USER: tell me about cats ASSISTANT:");
  ASSERT_GT(s.ids.size(), prompt.size());
  EXPECT_EQ(s.label_begin, int64_t(prompt.size()));
  EXPECT_EQ(s.ids.front(), tok.bos_id());
  EXPECT_EQ(s.ids.back(), tok.eos_id());
  EXPECT_EQ(std::vector<int32_t>(s.ids.begin(), s.ids.begin() + s.label_begin), prompt);
  const train::PairSample p = train::tokenize_pair(tok, "tell me about cats", " yes.", " no.");
  EXPECT_EQ(p.a.back(), tok.eos_id());
  EXPECT_EQ(p.b.back(), tok.eos_id());
  EXPECT_NE(p.a, p.b);
  const train::PromptSample q = train::tokenize_prompt(tok, "tell me about cats");
  EXPECT_EQ(q.ids, prompt);
}

}  // namespace
}  // namespace beaver
