// Tokenizer wrapper and conversation template: a tiny sentencepiece model is trained at test
// time on generated text (LLaMA id layout: unk 0, BOS 1, EOS 2), then encode/decode, special
// tokens, the added <pad>, the template's tokens and the mean-row growth are checked.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "testutil.h"
#include "train/template.h"

namespace beaver::model {
namespace {

std::vector<std::string> generated_lines() {
  const std::vector<std::string> words = {
      "beaver", "river", "dam",  "wood",  "water", "safe",  "helpful", "answer", "question",
      "tree",   "stone", "fish", "night", "day",   "cold",  "warm",    "small",  "large",
      "the",    "a",     "is",   "and",   "of",    "build", "swim",    "quick",  "slow"};
  PhiloxStream rng(42, 1);
  std::vector<std::string> lines;
  for (int i = 0; i < 300; ++i) {
    std::string s;
    const int n = 4 + int(rng.next_u32() % 9);
    for (int w = 0; w < n; ++w) {
      if (w) s += ' ';
      s += words[rng.next_u32() % words.size()];
    }
    s += (rng.next_u32() % 3 == 0) ? "?" : ".";
    lines.push_back(s);
  }
  return lines;
}

const Tokenizer& tok() {
  static const Tokenizer t = Tokenizer::from_serialized(
      train_sentencepiece(generated_lines(), 120), "a model trained by the test");
  return t;
}

TEST(Tokenizer, SpecialIdsFollowLlamaLayout) {
  const auto& t = tok();
  EXPECT_EQ(t.unk_id(), 0);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_EQ(t.pad_id(), -1);
  EXPECT_EQ(t.vocab_size(), 120);
  EXPECT_EQ(t.piece(1), "<s>");
  EXPECT_EQ(t.piece(2), "</s>");
}

TEST(Tokenizer, EncodeAddsBosAndRoundTrips) {
  const auto& t = tok();
  const std::string text = "the beaver builds a dam of wood and stone.";
  const auto ids = t.encode(text);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), t.bos_id());
  for (size_t i = 1; i < ids.size(); ++i) {
    EXPECT_GE(ids[i], 3) << "position " << i;  // no specials or unk in plain known text
    EXPECT_LT(ids[i], t.vocab_size());
  }
  EXPECT_EQ(t.decode(ids), text);
  const auto no_bos = t.encode(text, false, true);
  EXPECT_EQ(no_bos.size(), ids.size());
  EXPECT_EQ(no_bos.back(), t.eos_id());
  EXPECT_EQ(std::vector<int32_t>(no_bos.begin(), no_bos.end() - 1),
            std::vector<int32_t>(ids.begin() + 1, ids.end()));
}

TEST(Tokenizer, LiteralEosInTextBecomesEosId) {
  const auto& t = tok();
  const auto a = t.encode("safe water");
  const auto joined = t.encode("safe water</s>");
  ASSERT_EQ(joined.size(), a.size() + 1);
  EXPECT_EQ(joined.back(), t.eos_id());
  EXPECT_EQ(std::vector<int32_t>(joined.begin(), joined.end() - 1), a);
  // Decoding drops the specials.
  EXPECT_EQ(t.decode(joined), "safe water");
}

TEST(Tokenizer, AddedPadTakesTheOldVocabularySize) {
  Tokenizer t = Tokenizer::from_serialized(train_sentencepiece(generated_lines(), 120), "test");
  const int32_t old_size = t.vocab_size();
  EXPECT_EQ(t.add_pad_token(), old_size);
  EXPECT_EQ(t.add_pad_token(), old_size);  // idempotent
  EXPECT_EQ(t.pad_id(), old_size);
  EXPECT_EQ(t.vocab_size(), old_size + 1);
  EXPECT_EQ(t.piece(t.pad_id()), "<pad>");
  EXPECT_TRUE(t.is_special(t.pad_id()));
  const auto ids = t.encode("fish<pad>");
  EXPECT_EQ(ids.back(), t.pad_id());
  EXPECT_EQ(t.decode(ids), "fish");
}

TEST(Tokenizer, BadInputsAreNamedErrors) {
  const auto& t = tok();
  const std::vector<int32_t> bad = {1, 5, 500};
  try {
    (void)t.decode(bad);
    FAIL() << "decode accepted id 500";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("id 500 at position 2"), std::string::npos) << e.what();
  }
  try {
    (void)Tokenizer::from_file("/nonexistent/tokenizer.model");
    FAIL() << "loaded a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/tokenizer.model"), std::string::npos);
  }
}

// The template strings (train/template.h, pinned in test_data) tokenise as the reference
// expects: BOS first, the EOS text after each answer becomes the EOS id.
TEST(TemplateTokens, TrainingTextEndsWithEosToken) {
  const auto& t = tok();
  const std::string prompt = train::format_prompt("the river");
  const std::string text = train::format_training_text(prompt, " a dam of wood.");
  const auto ids = t.encode(text);
  EXPECT_EQ(ids.front(), t.bos_id());
  EXPECT_EQ(ids.back(), t.eos_id());
  EXPECT_EQ(ids, t.encode(prompt + " a dam of wood.", true, true));
}

TEST(TemplateTokens, MultiTurnAnswersEndWithEosIds) {
  const auto& t = tok();
  const std::vector<std::string> turns = {"the river", " a dam.", "the fish", " swim.", "and?"};
  const auto ids = t.encode(train::format_dialogue(turns));
  EXPECT_EQ(std::count(ids.begin(), ids.end(), t.eos_id()), 2);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), t.bos_id()), 1);
  EXPECT_NE(ids.back(), t.eos_id());  // the open question has no answer yet
}

TEST(GrowRows, NewRowsAreTheMeanOfOldRows) {
  const auto src = test::random_tensor({5, 3}, 7);
  OwnedTensor dst(DType::F32, {7, 3});
  test::poison(dst);
  grow_rows_with_mean(src, dst);
  const float* s = src.ptr<float>();
  const float* d = dst.ptr<float>();
  for (int j = 0; j < 3; ++j) {
    double m = 0;
    for (int r = 0; r < 5; ++r) m += s[r * 3 + j];
    m /= 5;
    for (int r = 0; r < 5; ++r) EXPECT_EQ(d[r * 3 + j], s[r * 3 + j]);
    EXPECT_EQ(d[5 * 3 + j], float(m)) << "column " << j;
    EXPECT_EQ(d[6 * 3 + j], float(m)) << "column " << j;
  }
  OwnedTensor wrong(DType::F32, {4, 3});
  EXPECT_THROW(grow_rows_with_mean(src, wrong), Error);
}

}  // namespace
}  // namespace beaver::model
