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

// A padded batch runs its token-wise ops on the valid tokens only (packed rows) and the LM
// head only on rows with a target: each row's log-probs, scores and weight gradients are those
// of the row run alone without padding, left or right padded, with a label mask, and the pad
// positions of the batch-layout outputs are 0.
TEST(LlamaModelGrads, PaddedBatchEqualsEachRowAlone) {
  Context ctx = Context::cpu(2);
  const LlamaConfig cfg = checkpoint_config(fixture_dir());
  const int64_t B = 3, S = 9;
  // Row 0 right padded, row 1 full, row 2 left padded.
  const std::vector<std::vector<int32_t>> rows = {
      {1, 9, 8, 7, 6}, {1, 44, 45, 46, 47, 48, 49, 50, 51}, {1, 120, 64, 3}};
  const std::vector<int32_t> begins = {0, 0, 5}, label_begin = {2, 4, 6};
  std::vector<int32_t> tokens(size_t(B * S), 0), ranges, positions(size_t(B * S), 0);
  for (int64_t b = 0; b < B; ++b) {
    const int32_t b0 = begins[size_t(b)], n = int32_t(rows[size_t(b)].size());
    for (int32_t i = 0; i < n; ++i) {
      tokens[size_t(b * S + b0 + i)] = rows[size_t(b)][size_t(i)];
      positions[size_t(b * S + b0 + i)] = i;
    }
    ranges.insert(ranges.end(), {b0, b0 + n});
  }
  const auto targets = next_token_targets(tokens, ranges, B, S, label_begin);
  const auto make = [&](Head head, int64_t batch) {
    auto m = std::make_unique<LlamaModel>(
        ctx, cfg, LlamaOptions{.head = head, .max_batch = batch, .max_seq = S, .training = true});
    load_weights(*m, fixture_dir());
    if (head == Head::Score) m->init_score_head(5);
    return m;
  };
  // dlogp / dscores: fixed values at every position (only target positions may matter).
  std::vector<float> g(size_t(B * S));
  for (size_t i = 0; i < g.size(); ++i) g[i] = 0.1f + 0.01f * float(i);
  for (const Head head : {Head::LM, Head::Score}) {
    SCOPED_TRACE(head == Head::LM ? "LM head" : "score head");
    auto batched = make(head, B);
    batched->zero_grads();
    const OwnedTensor tk = test::int_tensor(tokens, {B, S}), rg = test::int_tensor(ranges, {B, 2}),
                      ps = test::int_tensor(positions, {B, S});
    batched->forward(Batch{tk, rg, ps});
    OwnedTensor out(DType::F32, {B, S});
    test::poison(out);
    const auto grad = test::host_sentinel(g, Shape{B, S});
    if (head == Head::LM) {
      batched->token_logprobs(test::int_tensor(targets, {B, S}), out);
      batched->token_logprobs_backward(grad);
    } else {
      batched->scores(out, Tensor{});
      batched->scores_backward(grad, Tensor{});
    }
    const auto got = to_host_f32(out);
    // The sum of the rows' gradients, each row alone in a batch of one.
    auto alone = make(head, 1);
    alone->zero_grads();
    for (int64_t b = 0; b < B; ++b) {
      const int64_t n = int64_t(rows[size_t(b)].size()), b0 = begins[size_t(b)];
      std::vector<int32_t> pos(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) pos[size_t(i)] = int32_t(i);
      // The batch's tensors live until the backward (the model keeps views of them).
      const OwnedTensor tk1 = test::int_tensor(rows[size_t(b)], {1, n}),
                        rg1 = test::int_tensor({0, int32_t(n)}, {1, 2}),
                        ps1 = test::int_tensor(pos, {1, n});
      alone->forward(Batch{tk1, rg1, ps1});
      OwnedTensor one(DType::F32, {1, n});
      const std::vector<float> gb(g.begin() + b * S + b0, g.begin() + b * S + b0 + n);
      if (head == Head::LM) {
        const std::vector<int32_t> tb(targets.begin() + b * S + b0, targets.begin() + b * S + b0 + n);
        alone->token_logprobs(test::int_tensor(tb, {1, n}), one);
        alone->token_logprobs_backward(test::host_sentinel(gb, Shape{1, n}));
      } else {
        alone->scores(one, Tensor{});
        alone->scores_backward(test::host_sentinel(gb, Shape{1, n}), Tensor{});
      }
      const auto want = to_host_f32(one);
      for (int64_t t = 0; t < S; ++t) {
        const float v = got[size_t(b * S + t)];
        if (t < b0 || t >= b0 + n)
          EXPECT_EQ(v, 0.0f) << "pad position " << t << " of row " << b;
        else
          EXPECT_NEAR(v, want[size_t(t - b0)], 1e-5 * std::fabs(want[size_t(t - b0)]) + 1e-6)
              << "row " << b << " t " << t;
      }
    }
    const auto gw = to_host_f32(batched->flat_grads()), ga = to_host_f32(alone->flat_grads());
    // Summed over rows in another order: fp32 rounding, relative to the largest element.
    float largest = 0;
    for (float x : ga) largest = std::max(largest, std::fabs(x));
    EXPECT_GT(largest, 0.0f);
    for (size_t i = 0; i < gw.size(); ++i)
      ASSERT_NEAR(gw[i], ga[i], 1e-5f * largest) << "gradient element " << i;
  }
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
