// The inference engine on a golden fixture: batch composition does not change a sequence's
// output (greedy or seeded sampling), per-sequence EOS stopping, streaming order, statistics,
// and named errors for bad prompts. Also model-level checks that need no golden data: bad
// batches, gradient accumulation, AdamW over the flat vectors, label-masked targets.
// Token-level agreement with transformers is in test_llama_parity.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "csrc/ops/adamw.h"
#include "model/engine.h"
#include "model/llama.h"
#include "model/loader.h"
#include "testutil.h"

namespace beaver::model {
namespace {

std::string fixture_dir() {
  const char* src = std::getenv("BEAVER_SOURCE_DIR");
  return std::string(src ? src : ".") + "/tests/data/golden/mha";
}

struct EngineFixture : ::testing::Test {
  Context ctx = Context::cpu(1);
  LlamaConfig cfg = checkpoint_config(fixture_dir());
  LlamaModel model{
      ctx, cfg, LlamaOptions{.head = Head::LM, .max_batch = 3, .max_seq = 12, .training = false}};
  std::vector<std::vector<int32_t>> prompts = {
      {1, 40, 7, 99}, {1, 5, 88, 23, 61, 17, 3, 70, 12}, {1, 120, 64}};
  EngineFixture() { load_weights(model, fixture_dir()); }
};

TEST_F(EngineFixture, BatchedGreedyEqualsOneByOne) {
  InferenceEngine eng(model, 40);
  GenerateOptions go;
  go.sampling.temperature = 0.0f;
  go.max_new_tokens = 24;
  go.eos_id = -1;
  const auto batched = eng.generate(prompts, go);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto single = eng.generate({prompts[i]}, go);
    EXPECT_EQ(single[0].tokens, batched[i].tokens) << "prompt " << i;
    EXPECT_EQ(batched[i].tokens.size(), 24u);
  }
  // A training model (per-layer or recomputed activations) generates the same: PPO rolls
  // out with the very model it trains.
  for (bool recompute : {false, true}) {
    LlamaModel train_model(ctx, cfg,
                           LlamaOptions{.head = Head::LM,
                                        .max_batch = 3,
                                        .max_seq = 12,
                                        .training = true,
                                        .recompute = recompute});
    load_weights(train_model, fixture_dir());
    InferenceEngine eng2(train_model, 40);
    const auto out = eng2.generate(prompts, go);
    for (size_t i = 0; i < prompts.size(); ++i)
      EXPECT_EQ(out[i].tokens, batched[i].tokens) << "recompute " << recompute << " prompt " << i;
  }
}

TEST_F(EngineFixture, SeededSamplingDoesNotDependOnTheBatch) {
  InferenceEngine eng(model, 40);
  GenerateOptions go;
  go.sampling.temperature = 0.9f;
  go.sampling.top_k = 40;
  go.sampling.top_p = 0.95f;
  go.max_new_tokens = 20;
  go.eos_id = -1;
  go.seed = 100;
  const auto batched = eng.generate(prompts, go);
  // Sequence i draws with seed + i: prompt 1 alone with seed 101 is the same sequence.
  GenerateOptions one = go;
  one.seed = 101;
  EXPECT_EQ(eng.generate({prompts[1]}, one)[0].tokens, batched[1].tokens);
  EXPECT_EQ(eng.generate(prompts, go)[2].tokens, batched[2].tokens);  // reproducible
  one.seed = 555;
  EXPECT_NE(eng.generate({prompts[1]}, one)[0].tokens, batched[1].tokens);
}

TEST_F(EngineFixture, StopsEachSequenceAtEos) {
  InferenceEngine eng(model, 40);
  GenerateOptions go;
  go.sampling.temperature = 0.0f;
  go.max_new_tokens = 24;
  go.eos_id = -1;
  const auto free_run = eng.generate(prompts, go);
  // Make prompt 0's 6th greedy token the EOS: it stops there, without the EOS; a sequence
  // that never produces it runs to max_new_tokens unchanged.
  go.eos_id = free_run[0].tokens[5];
  std::map<size_t, std::vector<int32_t>> streamed;
  const auto out =
      eng.generate(prompts, go, [&](size_t seq, int32_t tok) { streamed[seq].push_back(tok); });
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& full = free_run[i].tokens;
    const auto it = std::find(full.begin(), full.end(), go.eos_id);
    EXPECT_EQ(out[i].tokens, std::vector<int32_t>(full.begin(), it)) << "prompt " << i;
    EXPECT_EQ(out[i].stopped_at_eos, it != full.end()) << "prompt " << i;
    EXPECT_EQ(streamed[i], out[i].tokens) << "prompt " << i;
  }
  EXPECT_TRUE(out[0].stopped_at_eos);
  EXPECT_LE(out[0].tokens.size(), 5u);
}

TEST_F(EngineFixture, CountsPrefillAndDecodeTokens) {
  InferenceEngine eng(model, 40);
  GenerateOptions go;
  go.sampling.temperature = 0.0f;
  go.max_new_tokens = 10;
  go.eos_id = -1;
  (void)eng.generate(prompts, go);
  EXPECT_EQ(eng.stats().prefill_tokens, 4 + 9 + 3);
  EXPECT_EQ(eng.stats().decode_tokens, 3 * 9);  // the first token comes from the prefill
  EXPECT_GT(eng.stats().decode_tokens_per_s(), 0.0);
  EXPECT_GT(eng.stats().prefill_tokens_per_s(), 0.0);
}

TEST_F(EngineFixture, BadPromptsAreNamedErrors) {
  InferenceEngine eng(model, 20);
  GenerateOptions go;
  go.max_new_tokens = 5;
  auto expect_error = [&](const std::vector<std::vector<int32_t>>& ps, const std::string& what) {
    try {
      (void)eng.generate(ps, go);
      ADD_FAILURE() << "accepted: " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error({{1, 2}, {}}, "prompt 1 is empty");
  expect_error({std::vector<int32_t>(13, 5)}, "prompt 0 has 13 tokens");
  expect_error({{1, 5, 128}}, "prompt 0 token 2 is 128");
  go.max_new_tokens = 19;
  expect_error({{1, 5, 6}}, "exceeds the cache length 20");
}

TEST(LlamaModelErrors, BadBatchesAreNamedErrors) {
  Context ctx = Context::cpu(1);
  const LlamaConfig cfg = checkpoint_config(fixture_dir());
  LlamaModel m(ctx, cfg,
               LlamaOptions{.head = Head::LM, .max_batch = 2, .max_seq = 8, .training = true});
  const OwnedTensor tok = test::int_tensor(std::vector<int32_t>(16, 3), {2, 8});
  const OwnedTensor pos = test::int_tensor(std::vector<int32_t>(16, 0), {2, 8});
  const OwnedTensor bad_range = test::int_tensor({0, 8, 3, 9}, {2, 2});
  try {
    m.forward(Batch{tok, bad_range, pos});
    ADD_FAILURE() << "accepted a range past S";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 1 has range [3, 9)"), std::string::npos) << e.what();
  }
  const OwnedTensor big = test::int_tensor(std::vector<int32_t>(27, 3), {3, 9});
  EXPECT_THROW(m.forward(Batch{big, bad_range, pos}), Error);
  const OwnedTensor targets = test::int_tensor(std::vector<int32_t>(16, -100), {2, 8});
  EXPECT_THROW((void)m.cross_entropy(targets), Error);  // no forward yet
  EXPECT_THROW((void)m.param("lm_head.bias"), Error);
  OwnedTensor scores(DType::F32, {2, 8});
  const OwnedTensor ok_range = test::int_tensor({0, 8, 2, 5}, {2, 2});
  m.forward(Batch{tok, ok_range, pos});
  EXPECT_THROW(m.scores(scores, Tensor{}), Error);  // LM head model
  try {
    (void)m.cross_entropy(targets);
    ADD_FAILURE() << "accepted an all-ignored target batch";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("every target is ignored"), std::string::npos);
  }
}

// Gradient accumulation: two backward passes over the same batch give twice the gradient.
TEST(LlamaModelGrads, BackwardAccumulates) {
  Context ctx = Context::cpu(1);
  const LlamaConfig cfg = checkpoint_config(fixture_dir());
  LlamaModel m(ctx, cfg,
               LlamaOptions{.head = Head::LM, .max_batch = 2, .max_seq = 6, .training = true});
  load_weights(m, fixture_dir());
  const std::vector<int32_t> tokens = {1, 9, 8, 7, 6, 5, 1, 44, 45, 0, 0, 0};
  const std::vector<int32_t> ranges = {0, 6, 0, 3};
  const OwnedTensor tok = test::int_tensor(tokens, {2, 6}), rng = test::int_tensor(ranges, {2, 2}),
                    pos = test::int_tensor({0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5}, {2, 6});
  const OwnedTensor tg = test::int_tensor(next_token_targets(tokens, ranges, 2, 6), {2, 6});
  std::vector<float> once;
  for (int rep = 0; rep < 2; ++rep) {
    m.forward(Batch{tok, rng, pos});
    (void)m.cross_entropy(tg);
    m.cross_entropy_backward();
    if (rep == 0) once = to_host_f32(m.flat_grads());
  }
  const auto twice = to_host_f32(m.flat_grads());
  double n = 0;
  for (size_t i = 0; i < once.size(); ++i) {
    EXPECT_NEAR(twice[i], 2 * once[i], 1e-6 * std::fabs(once[i]) + 1e-12) << "element " << i;
    n += std::fabs(once[i]);
  }
  EXPECT_GT(n, 0.0);
  // Pad positions of row 1 get no gradient: the embedding row of token 0 stays zero.
  const auto ge = to_host_f32(m.grad("model.embed_tokens.weight"));
  for (int64_t j = 0; j < cfg.hidden_size; ++j) EXPECT_EQ(ge[size_t(j)], 0.0f);
}

// The flat parameter and gradient vectors are what AdamW runs over: a few steps on one batch
// must learn it, with 2 threads bitwise reproducible, and the alignment gaps between tensors
// stay zero.
TEST(LlamaModelGrads, AdamWOverTheFlatVectorsLearnsABatch) {
  const LlamaConfig cfg = checkpoint_config(fixture_dir());
  const std::vector<int32_t> tokens = {1, 9, 8, 7, 6, 5, 4, 3, 1, 44, 45, 46, 47, 0, 0, 0};
  const std::vector<int32_t> ranges = {0, 8, 0, 5};
  const OwnedTensor tok = test::int_tensor(tokens, {2, 8}), rng = test::int_tensor(ranges, {2, 2}),
                    pos = test::int_tensor({0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7}, {2, 8});
  const OwnedTensor tg = test::int_tensor(next_token_targets(tokens, ranges, 2, 8), {2, 8});
  std::vector<std::vector<float>> finals;
  for (int run = 0; run < 2; ++run) {
    Context ctx = Context::cpu(2);
    LlamaModel m(ctx, cfg,
                 LlamaOptions{.head = Head::LM,
                              .max_batch = 2,
                              .max_seq = 8,
                              .training = true,
                              .recompute = run == 1});
    load_weights(m, fixture_dir());
    const int64_t n = m.flat_params().numel();
    OwnedTensor mom(DType::F32, {n}), var(DType::F32, {n});
    zero_tensor(mom);
    zero_tensor(var);
    ops::AdamWConfig ac;
    ac.lr = 3e-3f;
    ac.weight_decay = 0.01f;
    double first = 0, last = 0;
    for (int step = 1; step <= 12; ++step) {
      m.forward(Batch{tok, rng, pos});
      last = m.cross_entropy(tg);
      if (step == 1) first = last;
      m.zero_grads();
      m.cross_entropy_backward();
      ac.step = step;
      ops::adamw_step(ctx, m.flat_params(), m.flat_grads(), mom, var, Tensor{}, Tensor{},
                      m.decay_segments(), ac);
    }
    EXPECT_LT(last, 0.5 * first) << "run " << run << ": loss " << first << " -> " << last;
    finals.push_back(to_host_f32(m.flat_params()));
    // Gaps between tensors (alignment padding) are still zero.
    std::vector<bool> covered(size_t(n), false);
    for (const auto& sgm : m.decay_segments(true))
      for (int64_t i = 0; i < sgm.size; ++i) covered[size_t(sgm.offset + i)] = true;
    for (int64_t i = 0; i < n; ++i) {
      if (covered[size_t(i)]) continue;
      ASSERT_EQ(finals.back()[size_t(i)], 0.0f) << "gap element " << i;
    }
  }
  // Recomputation on (run 1) or off (run 0): the same bits after 12 steps.
  EXPECT_EQ(finals[0], finals[1]);
}

TEST(Targets, NextTokenTargetsWithLabelMask) {
  // Row 0 right-padded (len 5), row 1 left-padded (begin 2).
  const std::vector<int32_t> tokens = {1, 10, 11, 12, 13, 0, 0, 0, 1, 20, 21, 22};
  const std::vector<int32_t> ranges = {0, 5, 2, 6};
  const int32_t X = -100;
  EXPECT_EQ(next_token_targets(tokens, ranges, 2, 6),
            (std::vector<int32_t>{10, 11, 12, 13, X, X, X, X, 20, 21, 22, X}));
  // Labels start at column 3 (row 0) and 4 (row 1): earlier tokens are prompt.
  EXPECT_EQ(next_token_targets(tokens, ranges, 2, 6, {3, 4}),
            (std::vector<int32_t>{X, X, 12, 13, X, X, X, X, X, 21, 22, X}));
  EXPECT_THROW(next_token_targets(tokens, ranges, 2, 6, {3}), Error);
}

}  // namespace
}  // namespace beaver::model
