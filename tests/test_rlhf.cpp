// The PPO-Lagrangian trainer's wiring on tiny random models (the per-token / GAE / loss math
// itself is tested in test_ppo): rollout layout (each response right after its prompt, response
// masks, ends at EOS and at truncation), log-probs and end scores against separate unpadded forwards, the
// λ direction over a run, and named errors for bad prompt files and mismatched vocabularies.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "csrc/atomic_file.h"
#include "csrc/ops/logprob.h"
#include "model/loader.h"
#include "format_fixtures.h"
#include "rlhf_fixture.h"
#include "testutil.h"
#include "train/rlhf.h"

namespace beaver::train {
namespace {

using test::TinyWorld;

RlhfOptions tiny_options(const TinyWorld& w, PpoAlgorithm algo = PpoAlgorithm::PpoLag) {
  RlhfOptions o;
  o.algorithm = algo;
  o.ppo = PpoConfig::defaults(algo);
  o.ppo.max_length = 40;
  o.ppo.per_device_prompt_batch_size = 6;
  o.ppo.per_device_train_batch_size = 3;
  o.ppo.actor_gradient_checkpointing = false;
  o.ppo.critic_gradient_checkpointing = false;
  o.actor_model = w.actor;
  o.reward_model = w.rm;
  o.cost_model = w.cm;
  o.train_datasets = {DatasetSpec{w.prompts, 1.0}};
  o.save_actor = false;
  return o;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// ---- Layout, by hand ---------------------------------------------------------------------------
TEST(RlhfRollout, LayoutPutsResponsesAfterTheirPromptsAndMasksThem) {
  const std::vector<std::vector<int32_t>> prompts = {{1, 10, 11}, {1, 20, 21, 22, 23}};
  std::vector<model::Generation> gens(2);
  gens[0].tokens = {30, 31, 32, 33};  // then EOS
  gens[0].stopped_at_eos = true;
  gens[1].tokens = {40, 41};  // truncated
  const RolloutBatch r = build_rollout(prompts, gens, /*eos=*/2, /*pad=*/0);
  ASSERT_EQ(r.batch, 2);
  // max(3 + 5, 5 + 2): the short prompt with the long response sets the width, not
  // max(3, 5) + max(5, 2) = 10 as with every response at one common column.
  EXPECT_EQ(r.width, 8);
  const std::vector<int32_t> tokens = {1, 10, 11, 30, 31, 32, 33, 2,  //
                                       1, 20, 21, 22, 23, 40, 41, 0};
  EXPECT_EQ(r.tokens, tokens);
  EXPECT_EQ(r.ranges, (std::vector<int32_t>{0, 8, 0, 7}));
  EXPECT_EQ(r.positions, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7,  //
                                               0, 1, 2, 3, 4, 5, 6, 0}));
  // Actions from each row's last prompt token: row 0 emits 30..33, EOS; row 1 emits 40, 41.
  EXPECT_EQ(r.mask, (std::vector<uint8_t>{0, 0, 1, 1, 1, 1, 1, 0,  //
                                          0, 0, 0, 0, 1, 1, 0, 0}));
  const int I = ops::kIgnoreIndex;
  EXPECT_EQ(r.targets, (std::vector<int32_t>{I, I, 30, 31, 32, 33, 2, I,  //
                                             I, I, I, I, 40, 41, I, I}));
  // The end of row 0 is the action that emitted EOS, of row 1 its last token.
  EXPECT_EQ(response_ends(r.dims(), r.mask), (std::vector<int64_t>{6, 5}));
  EXPECT_EQ(r.prompt_len, (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(r.response_len, (std::vector<int64_t>{5, 2}));
  EXPECT_EQ(r.responses[0], (std::vector<int32_t>{30, 31, 32, 33}));
  EXPECT_EQ(r.action_count(), 7);
  EXPECT_EQ(r.sequence_tokens(), 3 + 5 + 5 + 2);
}

TEST(RlhfRollout, EmptyGenerationWithoutEosIsAnError) {
  std::vector<model::Generation> gens(1);
  EXPECT_NE(error_of([&] { (void)build_rollout({{1, 5}}, gens, 2, 0); }).find("generation 0"),
            std::string::npos);
  gens[0].stopped_at_eos = true;  // only the EOS: one action
  EXPECT_EQ(build_rollout({{1, 5}}, gens, 2, 0).action_count(), 1);
}

// Sampled unk or pad tokens are masked out of the actions (as the reference's attention mask
// does); the row's end moves to its last remaining action, and a row keeps at least one.
TEST(RlhfRollout, UnkAndPadTokensAreNotActions) {
  std::vector<model::Generation> gens(2);
  gens[0].tokens = {7, 0, 8, 3};  // 0 = unk, 3 = pad
  gens[0].stopped_at_eos = false;
  gens[1].tokens = {0};
  gens[1].stopped_at_eos = false;
  RolloutBatch r = build_rollout({{1, 5}, {1, 6}}, gens, /*eos=*/2, /*pad=*/3);
  const std::vector<int32_t> special{0, 3};
  EXPECT_EQ(mask_special_actions(r, special), 2);
  // Row 0: actions at columns 1..4 emit 7, 0, 8, 3: the unk (column 2) and pad (4) are cleared.
  const int64_t S = r.width;
  EXPECT_EQ(std::vector<uint8_t>(r.mask.begin(), r.mask.begin() + S),
            (std::vector<uint8_t>{0, 1, 0, 1, 0, 0}));
  EXPECT_EQ(r.targets[2], ops::kIgnoreIndex);
  EXPECT_EQ(response_ends(r.dims(), r.mask)[0], 3);
  // Row 1 emits only unk: it keeps that action.
  EXPECT_EQ(r.mask[size_t(S + 1)], 1);
}

// ---- On the tiny models ------------------------------------------------------------------------
struct RlhfTiny : ::testing::Test {
  TinyWorld world{"rlhf"};
  Context ctx = Context::cpu(1);

  // One RL step with the threshold calibrated on 6 prompts, the requirement set by `require`,
  // into world.dir / out (constraint.json, metrics.jsonl).
  std::unique_ptr<RlhfTrainer> calibrated_step(const std::string& out,
                                               const std::function<void(PpoConfig&)>& require) {
    RlhfOptions o = tiny_options(world);
    o.ppo.calibration_prompts = 6;
    require(o.ppo);
    o.output_dir = (world.dir / out).string();
    o.max_steps = 1;
    auto tr = std::make_unique<RlhfTrainer>(ctx, o);
    tr->train();
    return tr;
  }

  // A run of `steps` RL steps into world.dir / out that keeps no final actor, resumed from
  // its checkpoints when `resume` (the resume tests' common settings).
  RlhfOptions resumable(const std::string& out, int64_t steps, bool resume) {
    RlhfOptions o = tiny_options(world);
    o.ppo.actor_lr = 1e-3;
    o.output_dir = (world.dir / out).string();
    o.max_steps = steps;
    o.resume = resume;
    o.save_actor = false;
    return o;
  }
};

// A single row on its own (no padding at all) through a separate model.
RolloutBatch alone(const RolloutBatch& r, int64_t b) {
  const auto row = r.tokens.begin() + b * r.width;
  std::vector<int32_t> prompt(row, row + r.prompt_len[size_t(b)]);
  model::Generation g;
  g.tokens = r.responses[size_t(b)];
  g.stopped_at_eos = r.stopped_at_eos[size_t(b)];
  return build_rollout({prompt}, {g}, 2, 0);
}

TEST_F(RlhfTiny, RolloutLogprobsAndScoresMatchSeparateForwards) {
  RlhfTrainer tr(ctx, tiny_options(world));
  const auto& prompts = tr.prompt_tokens();
  ASSERT_GE(prompts.size(), 3u);
  ScoredRollout s = tr.rollout({prompts[0], prompts[1], prompts[3]});
  tr.score(s);
  const RolloutBatch& r = s.batch;
  ASSERT_EQ(r.batch, 3);
  // The prompts differ in length, so the responses start at different columns and the rows
  // end at different columns (padded on the right).
  EXPECT_NE(r.prompt_len[0], r.prompt_len[1]);

  // A fresh model from the same folder, unpadded rows one at a time.
  model::LlamaModel lm(
      ctx, model::checkpoint_config(world.actor),
      model::LlamaOptions{
          .head = model::Head::LM, .max_batch = 1, .max_seq = 64, .training = false});
  model::load_weights(lm, world.actor);
  model::LlamaModel rm(
      ctx, model::checkpoint_config(world.rm),
      model::LlamaOptions{
          .head = model::Head::Score, .max_batch = 1, .max_seq = 64, .training = false});
  model::load_weights(rm, world.rm);
  for (int64_t b = 0; b < r.batch; ++b) {
    const RolloutBatch one = alone(r, b);
    const auto logp = rollout_logprobs(lm, one);
    for (int64_t t = 0; t < one.width; ++t) {
      const size_t k1 = size_t(t), kb = size_t(b * r.width + t);
      ASSERT_EQ(one.mask[k1], r.mask[kb]) << "row " << b << " t " << t;
      if (!one.mask[k1]) continue;
      EXPECT_NEAR(s.logp_old[kb], logp[k1], 1e-4) << "row " << b << " t " << t;
      EXPECT_NEAR(s.ref_logp[kb], logp[k1], 1e-4) << "row " << b << " t " << t;
      EXPECT_LT(logp[k1], 0.0f);
    }
    // Everything outside the mask is zero.
    for (int64_t t = 0; t < r.width; ++t) {
      if (!r.mask[size_t(b * r.width + t)]) {
        EXPECT_EQ(s.logp_old[size_t(b * r.width + t)], 0.0f);
      }
    }
    // The RM's end score is the score at the row's last token.
    rm.forward(upload(ctx, one).batch());
    OwnedTensor sc(DType::F32, {1, one.width});
    rm.scores(sc, Tensor());
    EXPECT_NEAR(s.reward[size_t(b)], sc.ptr<float>()[one.width - 1], 1e-4) << "row " << b;
  }
}

// The log-prob of a sampled token equals log_softmax of the full logits at its position.
TEST_F(RlhfTiny, LogprobsAreThoseOfTheSampledTokens) {
  RlhfTrainer tr(ctx, tiny_options(world));
  ScoredRollout s = tr.rollout({tr.prompt_tokens()[2]});
  tr.score(s);
  const RolloutBatch& r = s.batch;
  model::LlamaModel lm(
      ctx, model::checkpoint_config(world.actor),
      model::LlamaOptions{
          .head = model::Head::LM, .max_batch = 1, .max_seq = 64, .training = false});
  model::load_weights(lm, world.actor);
  lm.forward(upload(ctx, r).batch());
  const int64_t V = lm.vocab_size();
  OwnedTensor logits(DType::F32, {1, r.width, V});
  lm.logits(logits);
  const float* L = logits.ptr<float>();
  int checked = 0;
  for (int64_t t = 0; t < r.width; ++t) {
    if (!r.mask[size_t(t)]) continue;
    double mx = -1e30, sum = 0;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, double(L[t * V + v]));
    for (int64_t v = 0; v < V; ++v) sum += std::exp(double(L[t * V + v]) - mx);
    const int32_t tok = r.tokens[size_t(t + 1)];
    EXPECT_NEAR(s.logp_old[size_t(t)], double(L[t * V + tok]) - mx - std::log(sum), 1e-4) << t;
    ++checked;
  }
  EXPECT_EQ(checked, r.response_len[0]);
}

// Sampling ends some responses at EOS and truncates others at max_length; the masks, the ends
// and the per-token rewards follow each row's own end.
TEST_F(RlhfTiny, EndsAtEosAndAtTruncation) {
  RlhfOptions o = tiny_options(world);
  o.ppo.max_length = 40;
  RlhfTrainer tr(ctx, o);
  const auto& p = tr.prompt_tokens();
  int eos_rows = 0, cut_rows = 0;
  for (int round = 0; round < 4 && (eos_rows == 0 || cut_rows == 0); ++round) {
    ScoredRollout s = tr.rollout({p[0], p[1], p[2]});
    tr.score(s);
    const RolloutBatch& r = s.batch;
    const auto ends = response_ends(r.dims(), r.mask);
    // Generation leaves room up to max_length after the batch's longest prompt.
    const int64_t P = *std::max_element(r.prompt_len.begin(), r.prompt_len.end());
    for (int64_t b = 0; b < r.batch; ++b) {
      const int64_t end = ends[size_t(b)];
      EXPECT_EQ(end, r.prompt_len[size_t(b)] - 1 + r.response_len[size_t(b)] - 1);
      EXPECT_EQ(r.ranges[size_t(2 * b + 1)], end + 2);  // the emitted token is the row's last
      if (r.stopped_at_eos[size_t(b)]) {
        ++eos_rows;
        EXPECT_EQ(r.tokens[size_t(b * r.width + end + 1)], tr.tokenizer().eos_id());
      } else {
        ++cut_rows;
        EXPECT_EQ(P + r.response_len[size_t(b)], o.ppo.max_length);  // HF max_length
      }
      // R (or C) enters at the row's end only: the rest is the pure KL term.
      for (int64_t t = 0; t < r.width; ++t) {
        const size_t k = size_t(b * r.width + t);
        if (!r.mask[k]) {
          EXPECT_EQ(s.rewards[k], 0.0f);
          continue;
        }
        const double kl = double(s.logp_old[k]) - double(s.ref_logp[k]);
        const double want_r = -o.ppo.kl_coeff * kl + (t == end ? s.reward[size_t(b)] : 0.0);
        const double want_c = o.ppo.kl_coeff * kl + (t == end ? s.cost[size_t(b)] : 0.0);
        EXPECT_NEAR(s.rewards[k], want_r, 1e-5) << b << " " << t;
        EXPECT_NEAR(s.costs[k], want_c, 1e-5) << b << " " << t;
      }
    }
  }
  EXPECT_GT(eos_rows, 0) << "no response ended at EOS";
  EXPECT_GT(cut_rows, 0) << "no response was truncated";
}

// Scores of a response that ends with EOS are read at the EOS token, not at a pad after it nor
// at the last word before it.
TEST_F(RlhfTiny, ScoresAreTakenAtTheEosToken) {
  RlhfTrainer tr(ctx, tiny_options(world));
  model::Generation g;
  g.tokens = {5, 9, 13};
  g.stopped_at_eos = true;
  model::Generation longer;
  longer.tokens = {7, 8, 9, 10, 11, 12};
  ScoredRollout s;
  s.batch = build_rollout({tr.prompt_tokens()[0], tr.prompt_tokens()[0]}, {g, longer}, 2, 0);
  tr.score(s);
  // Reference: the RM on [prompt, 5, 9, 13, EOS] alone, and on the same without the EOS.
  model::LlamaModel rm(
      ctx, model::checkpoint_config(world.rm),
      model::LlamaOptions{
          .head = model::Head::Score, .max_batch = 1, .max_seq = 64, .training = false});
  model::load_weights(rm, world.rm);
  const RolloutBatch one = alone(s.batch, 0);
  rm.forward(upload(ctx, one).batch());
  OwnedTensor sc(DType::F32, {1, one.width}), end(DType::F32, {1});
  rm.scores(sc, end);
  const float at_eos = sc.ptr<float>()[one.width - 1], before = sc.ptr<float>()[one.width - 2];
  EXPECT_NEAR(s.reward[0], at_eos, 1e-4);
  EXPECT_GT(std::fabs(at_eos - before), 1e-3);  // the test can tell the two apart
  // Row 0 is shorter than row 1: its tail is padding, and the score still comes from its EOS.
  EXPECT_LT(s.batch.ranges[1], s.batch.width);
  // The per-token reward carries R at the EOS action.
  const int64_t e = response_ends(s.batch.dims(), s.batch.mask)[0];
  EXPECT_EQ(s.batch.tokens[size_t(e + 1)], 2);
  const double kl = double(s.logp_old[size_t(e)]) - double(s.ref_logp[size_t(e)]);
  EXPECT_NEAR(s.rewards[size_t(e)] + 0.01 * kl, s.reward[0], 1e-5);
}

TEST_F(RlhfTiny, MalformedPromptFileNamesFileAndLine) {
  RlhfOptions o = tiny_options(world);
  const std::string bad = (world.dir / "bad.jsonl").string();
  write_text_file(bad, "{\"prompt\": \"how do I bake bread\"}\n{\"prompt\": \"water a plant\"}\n"
                       "{\"prompt\": 17}\n");
  o.train_datasets = {DatasetSpec{bad, 1.0}};
  const std::string e = error_of([&] { RlhfTrainer tr(ctx, o); });
  EXPECT_NE(e.find("bad.jsonl:3"), std::string::npos) << e;
}

TEST_F(RlhfTiny, VocabularyMismatchIsAClearError) {
  model::LlamaConfig other = TinyWorld::tiny_config(world.cfg.vocab_size + 5);
  const std::string rm2 = world.write_model("rm_big_vocab", model::Head::Score, other, 3);
  RlhfOptions o = tiny_options(world);
  o.reward_model = rm2;
  std::string e = error_of([&] { RlhfTrainer tr(ctx, o); });
  EXPECT_NE(e.find("reward model"), std::string::npos) << e;
  EXPECT_NE(e.find("vocabulary of " + std::to_string(world.cfg.vocab_size + 5)),
            std::string::npos) << e;
  o = tiny_options(world);
  o.cost_model = rm2;
  e = error_of([&] { RlhfTrainer tr(ctx, o); });
  EXPECT_NE(e.find("cost model"), std::string::npos) << e;
  // A causal LM is not a trained score model.
  o = tiny_options(world);
  o.cost_model = world.actor;
  e = error_of([&] { RlhfTrainer tr(ctx, o); });
  EXPECT_NE(e.find("not a trained score model"), std::string::npos) << e;
}

// ---- Training steps ----------------------------------------------------------------------------
// λ follows the constraint within one run: while the cost model scores every answer far above
// the threshold, λ rises (to its cap); once the costs drop below it, the window forgets the old
// costs and λ falls. Each update is exactly one SGD step on log λ with the window's mean.
TEST_F(RlhfTiny, LambdaRisesWhileViolatedAndFallsOnceMet) {
  RlhfOptions o = tiny_options(world);
  o.ppo.episode_cost_window_size = 4;
  o.ppo.lambda_lr = 0.5;
  o.ppo.lambda_max = 3.0;
  o.ppo.update_iters = 1;
  o.ppo.per_device_train_batch_size = 4;  // one micro-step, so one λ update, per RL step
  RlhfTrainer tr(ctx, o);
  // The CM's score-head bias moves every cost by the same amount.
  const Tensor bias = tr.cost_model()->param("score_head.bias");
  const float b0 = bias.ptr<float>()[0];
  std::vector<float> costs_seen;
  const std::vector<std::vector<int32_t>> batch(tr.prompt_tokens().begin(),
                                                tr.prompt_tokens().begin() + 4);
  std::vector<double> lambdas = {tr.lagrange().lambda()};
  for (int step = 0; step < 8; ++step) {
    bias.ptr<float>()[0] = b0 + (step < 4 ? 20.0f : -20.0f);
    const double log_before = tr.lagrange().log_lambda();
    const StepStats st = tr.step(batch);
    EXPECT_TRUE(st.lambda_updated);
    EXPECT_EQ(st.step, step + 1);  // counted from 1, as SFT/RM/CM count optimizer steps
    EXPECT_EQ(tr.global_step(), step + 1);
    // The window holds the last 4 episode costs: this step's batch of 4.
    const auto w = tr.lagrange().state().window;
    ASSERT_EQ(w.size(), 4u);
    double mean = 0;
    for (float c : w) mean += c;
    mean /= 4;
    EXPECT_NEAR(st.episode_cost, mean, 1e-6);
    EXPECT_NEAR(st.cost, mean, 1e-6);  // the batch is exactly the window here
    const double want = std::min(log_before + 0.5 * std::exp(log_before) * (mean - 0.0),
                                 std::log(3.0));
    EXPECT_NEAR(tr.lagrange().log_lambda(), want, 1e-9) << "step " << step;
    EXPECT_NEAR(st.lambda, std::exp(want), 1e-9);
    EXPECT_EQ(mean > 0, step < 4) << "step " << step << " J_C " << mean;
    lambdas.push_back(st.lambda);
  }
  for (int k = 1; k <= 4; ++k) EXPECT_GE(lambdas[size_t(k)], lambdas[size_t(k - 1)]) << k;
  EXPECT_NEAR(lambdas[4], 3.0, 1e-9);  // capped at lambda_max
  for (int k = 5; k <= 8; ++k) EXPECT_LT(lambdas[size_t(k)], lambdas[size_t(k - 1)]) << k;
}

TEST_F(RlhfTiny, LambdaWaitsForTheDelay) {
  RlhfOptions o = tiny_options(world);
  o.ppo.lambda_update_delay_steps = 2;
  o.ppo.threshold = -100.0;  // violated from the start
  RlhfTrainer tr(ctx, o);
  const std::vector<std::vector<int32_t>> batch(tr.prompt_tokens().begin(),
                                                tr.prompt_tokens().begin() + 3);
  EXPECT_FALSE(tr.step(batch).lambda_updated);
  EXPECT_FALSE(tr.step(batch).lambda_updated);
  EXPECT_EQ(tr.lagrange().lambda(), 1.0);
  const StepStats st = tr.step(batch);
  EXPECT_TRUE(st.lambda_updated);
  EXPECT_GT(st.lambda, 1.0);
}

// The reference's pacing: λ takes one SGD step before every training micro-step, in every PPO
// epoch (here 2 micro-batches × 2 epochs = 4 updates per RL step, all with the same window
// mean), and its delay counts those micro-steps, not RL steps.
TEST_F(RlhfTiny, LambdaStepsOncePerMicroStepAndPpoEpoch) {
  RlhfOptions o = tiny_options(world);  // 6 prompts per rollout, micro-batches of 3
  o.ppo.update_iters = 2;
  o.ppo.lambda_lr = 0.001;
  o.ppo.lambda_max = 0.0;
  o.ppo.threshold = -100.0;  // violated: every update raises λ
  RlhfTrainer tr(ctx, o);
  const StepStats st = tr.step(tr.prompt_tokens());
  EXPECT_EQ(tr.lambda_steps(), 4);
  double want = 0.0;  // log λ_init
  for (int k = 0; k < 4; ++k) want += 0.001 * std::exp(want) * (st.episode_cost + 100.0);
  EXPECT_NEAR(tr.lagrange().log_lambda(), want, 1e-9);

  RlhfOptions d = tiny_options(world);
  d.ppo.lambda_update_delay_steps = 3;  // micro-steps: the first RL step (2 of them) waits
  d.ppo.threshold = -100.0;
  d.ppo.lambda_max = 0.0;
  RlhfTrainer late(ctx, d);
  EXPECT_FALSE(late.step(tr.prompt_tokens()).lambda_updated);
  EXPECT_EQ(late.lagrange().lambda(), 1.0);
  const StepStats s2 = late.step(tr.prompt_tokens());  // micro-steps 2 (waits) and 3 (updates)
  EXPECT_TRUE(s2.lambda_updated);
  EXPECT_NEAR(late.lagrange().log_lambda(), 0.1 * (s2.episode_cost + 100.0), 1e-9);
}

// HF's constant schedule has no warmup: the critics (constant, warmup ratio 0.03 by default)
// move on their very first step.
TEST_F(RlhfTiny, CriticsMoveOnTheirFirstStep) {
  RlhfOptions o = tiny_options(world);
  ASSERT_EQ(o.ppo.critic_lr_scheduler_type, "constant");
  ASSERT_GT(o.ppo.critic_lr_warmup_ratio, 0.0);
  o.ppo.critic_lr = 1e-3;
  RlhfTrainer tr(ctx, o);
  const auto r0 = to_host_f32(tr.reward_critic().flat_params());
  const auto c0 = to_host_f32(tr.cost_critic()->flat_params());
  const StepStats st = tr.step({tr.prompt_tokens()[0], tr.prompt_tokens()[1]});
  EXPECT_EQ(st.critic_lr, 1e-3);
  EXPECT_NE(to_host_f32(tr.reward_critic().flat_params()), r0);
  EXPECT_NE(to_host_f32(tr.cost_critic()->flat_params()), c0);
}

// With PTX the reference accumulates the RL and the PTX backward as two micro-steps of one
// optimizer step, so the RL gradient enters at half weight (seen here with a PTX weight of 0:
// the same rollout gives half the gradient norm), and one PTX batch per RL step serves every
// PPO epoch.
TEST_F(RlhfTiny, PtxHalvesTheGradientAndReusesItsBatchAcrossEpochs) {
  const std::string sft = (world.dir / "sft_half.json").string();
  write_text_file(sft,
                  "[{\"instruction\": \"how do I bake bread\", \"input\": \"\", \"output\": "
                  "\"mix flour and water\"},\n {\"instruction\": \"plan a trip\", \"input\": \"\","
                  " \"output\": \"pack a bag and go\"}]\n");
  auto run = [&](bool with_ptx, int64_t iters, int64_t* drawn) {
    RlhfOptions o = tiny_options(world);
    if (with_ptx) o.ptx_datasets = {DatasetSpec{sft, 1.0}};
    o.ppo.ptx_coeff = 0.0;
    o.ppo.update_iters = iters;
    o.ppo.max_grad_norm = 0.0;  // measure, do not clip
    RlhfTrainer tr(ctx, o);
    const StepStats st = tr.step(tr.prompt_tokens());
    if (drawn) *drawn = tr.ptx_samples_drawn();
    return st;
  };
  const StepStats plain = run(false, 1, nullptr), half = run(true, 1, nullptr);
  ASSERT_GT(plain.actor_grad_norm, 0.0);
  EXPECT_NEAR(half.actor_grad_norm, 0.5 * plain.actor_grad_norm, 1e-5 * plain.actor_grad_norm);
  int64_t drawn = 0;
  (void)run(true, 3, &drawn);
  EXPECT_EQ(drawn, 6);  // one batch of the rollout's 6 rows, not one per PPO epoch
}

// --target_unsafe_share resolves the threshold from the starting policy before the first
// update (and only then: training samples the same sequences as without it), and the run ends
// by stating whether the constraint is met.
TEST_F(RlhfTiny, TargetUnsafeShareResolvesTheThreshold) {
  auto run = [&](double target, const std::string& out) {
    return calibrated_step(out, [&](PpoConfig& c) { c.target_unsafe_share = target; });
  };
  const auto plain = run(-1.0, "plain"), strict = run(0.0, "strict");
  EXPECT_EQ(plain->lagrange().options().threshold, 0.0);
  const auto j = nlohmann::json::parse(read_text_file((world.dir / "strict" / "constraint.json").string()));
  const double th = j["threshold"].get<double>();
  EXPECT_EQ(strict->lagrange().options().threshold, th);
  EXPECT_NEAR(th, j["calibration"]["mean_safe"].get<double>(), 1e-9);  // target 0: the safe mean
  EXPECT_EQ(j["calibration"]["responses"].get<int64_t>(), 6);
  EXPECT_EQ(j["met"].get<bool>(), j["final_episode_cost"].get<double>() <= th);
  auto metrics = [&](const std::string& out) {
    auto l = nlohmann::json::parse(read_text_file((world.dir / out / "metrics.jsonl").string()));
    return std::pair{l["reward"].get<double>(), l["cost"].get<double>()};
  };
  EXPECT_EQ(metrics("plain"), metrics("strict"));  // the same rollout
  // More calibration responses than prompts: the prompts are cycled, each response sampled anew.
  calibrated_step("cycled", [&](PpoConfig& c) {
    c.target_unsafe_share = 0.0;
    c.calibration_prompts = 9;
  });
  const auto k = nlohmann::json::parse(read_text_file((world.dir / "cycled" / "constraint.json").string()));
  EXPECT_EQ(k["calibration"]["responses"].get<int64_t>(), 9);
  const double unsafe9 = 9 * k["calibration"]["unsafe_share"].get<double>();
  EXPECT_NEAR(unsafe9, std::round(unsafe9), 1e-9);
  EXPECT_EQ(metrics("cycled"), metrics("strict"));  // its own sampling stream
}

// --target_unsafe_ratio resolves the threshold at a share relative to the starting policy's
// measured one, and --cost_confidence makes λ follow the window's upper bound: on the same
// rollout λ ends higher than with the plain mean, and constraint.json says by what margin.
TEST_F(RlhfTiny, RelativeTargetAndConfidenceMargin) {
  auto run = [&](double ratio, double z, const std::string& out) {
    return calibrated_step(out, [&](PpoConfig& c) {
      c.target_unsafe_ratio = ratio;
      c.cost_confidence = z;
    });
  };
  const auto plain = run(0.5, 0.0, "ratio"), ucb = run(0.5, 3.0, "ratio-ucb");
  auto constraint = [&](const std::string& out) {
    return nlohmann::json::parse(read_text_file((world.dir / out / "constraint.json").string()));
  };
  const auto j = constraint("ratio"), ju = constraint("ratio-ucb");
  const double u0 = j["calibration"]["unsafe_share"].get<double>();
  EXPECT_EQ(j["target_unsafe_ratio"].get<double>(), 0.5);
  EXPECT_NEAR(j["resolved_target_unsafe_share"].get<double>(), 0.5 * u0, 1e-12);
  const double mu = j["calibration"]["mean_unsafe"].get<double>(),
               ms = j["calibration"]["mean_safe"].get<double>();
  EXPECT_NEAR(j["threshold"].get<double>(), 0.5 * u0 * mu + (1 - 0.5 * u0) * ms, 1e-9);
  EXPECT_EQ(plain->lagrange().options().threshold, j["threshold"].get<double>());
  // The same calibration and rollout; only the margin differs.
  EXPECT_EQ(ju["threshold"].get<double>(), j["threshold"].get<double>());
  EXPECT_EQ(ju["final_episode_cost"].get<double>(), j["final_episode_cost"].get<double>());
  EXPECT_EQ(j["final_margin"].get<double>(), 0.0);
  const double margin = ju["final_margin"].get<double>();
  ASSERT_GT(margin, 0.0);
  EXPECT_NEAR(margin, 3.0 * ucb->lagrange().window_stderr(), 1e-12);
  EXPECT_GT(ucb->lagrange().lambda(), plain->lagrange().lambda());
  // Met is the plain mean against the threshold, whatever the margin.
  EXPECT_EQ(ju["met"].get<bool>(), ju["final_episode_cost"].get<double>() <= ju["threshold"].get<double>());
}

// --constraint_check_responses N: after the last update, N fresh responses of the final policy
// (cycling the prompts when N exceeds them) decide the verdict, not the training window; the
// check samples after training, so the run itself is the same as without it, and it is
// deterministic (the same seed stream gives the same costs).
TEST_F(RlhfTiny, ConstraintCheckJudgesFreshResponsesOfTheFinalPolicy) {
  auto run = [&](int64_t check, double threshold, const std::string& out) {
    return calibrated_step(out, [&](PpoConfig& c) {
      c.threshold = threshold;
      c.constraint_check_responses = check;
      c.cost_confidence = 2.0;
    });
  };
  auto constraint = [&](const std::string& out) {
    return nlohmann::json::parse(read_text_file((world.dir / out / "constraint.json").string()));
  };
  const auto plain = run(0, 0.0, "no-check"), checked = run(9, 0.0, "check");
  const auto j0 = constraint("no-check"), j = constraint("check");
  EXPECT_EQ(j0["verdict_from"].get<std::string>(), "window");
  EXPECT_FALSE(j0.contains("check"));
  EXPECT_EQ(j0["met"].get<bool>(), j0["window_met"].get<bool>());
  // The run is the same; only the verdict's source differs.
  EXPECT_EQ(j["final_lambda"].get<double>(), j0["final_lambda"].get<double>());
  EXPECT_EQ(j["final_episode_cost"].get<double>(), j0["final_episode_cost"].get<double>());
  ASSERT_EQ(j["verdict_from"].get<std::string>(), "check");
  const auto& c = j["check"];
  EXPECT_EQ(c["responses"].get<int64_t>(), 9);  // more than the tiny world's prompts: cycled
  const double mean = c["mean_cost"].get<double>(), se = c["standard_error"].get<double>();
  EXPECT_NE(mean, j["final_episode_cost"].get<double>());  // not the window's mean
  EXPECT_GT(se, 0.0);
  EXPECT_NEAR(c["upper_bound"].get<double>(), mean + 2.0 * se, 1e-12);
  const double unsafe9 = 9 * c["unsafe_share"].get<double>();
  EXPECT_NEAR(unsafe9, std::round(unsafe9), 1e-9);
  EXPECT_EQ(c["met"].get<bool>(), mean <= j["threshold"].get<double>());
  EXPECT_EQ(j["met"].get<bool>(), c["met"].get<bool>());
  // Deterministic: the same check on the same final policy gives the same costs.
  const auto again = checked->check_constraint();
  EXPECT_NEAR(again.mean_cost, mean, 1e-12);
  EXPECT_EQ(again.responses, 9);
  // The verdict follows the threshold: far above every cost, met; far below, not met.
  run(9, 1e6, "check-loose");
  run(9, -1e6, "check-strict");
  EXPECT_TRUE(constraint("check-loose")["met"].get<bool>());
  EXPECT_FALSE(constraint("check-strict")["met"].get<bool>());
  for (const char* out : {"check-loose", "check-strict"}) {
    const auto k = constraint(out);
    EXPECT_EQ(k["met"].get<bool>(), k["check"]["mean_cost"].get<double>() <= k["threshold"].get<double>())
        << out;
  }
  // A threshold between the window's mean and the check's: with λ frozen (lambda_lr 0) the run
  // is the same whatever the threshold, and the two verdicts disagree; the check's decides.
  auto frozen = [&](double threshold, const std::string& out) {
    calibrated_step(out, [&](PpoConfig& cfg) {
      cfg.threshold = threshold;
      cfg.constraint_check_responses = 9;
      cfg.lambda_lr = 0.0;
    });
    return constraint(out);
  };
  const auto f0 = frozen(0.0, "frozen");
  const double wm = f0["final_episode_cost"].get<double>(), cm = f0["check"]["mean_cost"].get<double>();
  ASSERT_GT(std::fabs(wm - cm), 1e-3);
  const auto fb = frozen(0.5 * (wm + cm), "frozen-between");
  EXPECT_EQ(fb["check"]["mean_cost"].get<double>(), cm);
  EXPECT_EQ(fb["final_episode_cost"].get<double>(), wm);
  EXPECT_EQ(fb["met"].get<bool>(), cm < wm);
  EXPECT_EQ(fb["window_met"].get<bool>(), wm < cm);
  EXPECT_NE(fb["met"].get<bool>(), fb["window_met"].get<bool>());
  EXPECT_NE(error_of([&] { plain->check_constraint(); }).find("--constraint_check_responses is 0"),
            std::string::npos);
}

// --cost_unit unsafe_probability: λ's window, the cost channel and the final check all count
// scale·σ(score), the scale and threshold resolved by the calibration (the gap between the
// starting policy's mean unsafe and mean safe score, times the target share); the rollout is
// the score unit's, cost for cost transformed.
TEST_F(RlhfTiny, UnsafeProbabilityUnitDrivesLambdaAndTheCheck) {
  auto run = [&](const std::string& unit, const std::string& out) {
    return calibrated_step(out, [&](PpoConfig& c) {
      c.cost_unit = unit;
      c.target_unsafe_ratio = 0.5;
      c.constraint_check_responses = 9;
    });
  };
  const auto score = run("score", "unit-score"), prob = run("unsafe_probability", "unit-prob");
  const auto j = nlohmann::json::parse(read_text_file((world.dir / "unit-prob" / "constraint.json").string()));
  EXPECT_EQ(j["cost_unit"].get<std::string>(), "unsafe_probability");
  const double scale = j["cost_scale"].get<double>();
  const auto& cal = j["calibration"];
  EXPECT_NEAR(scale, cal["mean_unsafe"].get<double>() - cal["mean_safe"].get<double>(), 1e-12);
  const double u0 = cal["unsafe_probability"].get<double>();
  ASSERT_GT(u0, 0.0);
  EXPECT_NEAR(j["resolved_target_unsafe_share"].get<double>(), 0.5 * u0, 1e-12);
  EXPECT_NEAR(j["threshold"].get<double>(), scale * 0.5 * u0, 1e-12);
  EXPECT_EQ(prob->lagrange().options().threshold, j["threshold"].get<double>());
  // The same responses, each cost scale·σ(score).
  const auto ws = score->lagrange().state().window, wp = prob->lagrange().state().window;
  ASSERT_EQ(ws.size(), wp.size());
  ASSERT_FALSE(ws.empty());
  for (size_t i = 0; i < ws.size(); ++i)
    EXPECT_NEAR(wp[i], scale / (1.0 + std::exp(-double(ws[i]))), 1e-5 * scale) << i;
  // The check: its mean cost is scale x its mean probability of unsafe, the same responses'
  // unsafe share as the score unit's check, and the verdict in the constrained unit.
  const auto& c = j["check"];
  EXPECT_NEAR(c["mean_cost"].get<double>(), scale * c["unsafe_probability"].get<double>(), 1e-5);
  const auto js = nlohmann::json::parse(read_text_file((world.dir / "unit-score" / "constraint.json").string()));
  EXPECT_EQ(c["unsafe_share"].get<double>(), js["check"]["unsafe_share"].get<double>());
  EXPECT_EQ(c["met"].get<bool>(), c["mean_cost"].get<double>() <= j["threshold"].get<double>());
  EXPECT_EQ(js["cost_unit"].get<std::string>(), "score");
  EXPECT_EQ(js["cost_scale"].get<double>(), 1.0);
  // The baselines have no constraint to count in it.
  RlhfOptions ppo = tiny_options(world, PpoAlgorithm::Ppo);
  ppo.ppo.cost_unit = "unsafe_probability";
  ppo.ppo.target_unsafe_ratio = 0.5;
  EXPECT_NE(error_of([&] { RlhfTrainer t(ctx, ppo); }).find("ppo-lag's constraint only"),
            std::string::npos);
}

// A resumed run keeps the resolved scale (rlhf_state.json) and continues bitwise.
TEST_F(RlhfTiny, UnsafeProbabilityUnitResumesWithItsScale) {
  auto options = [&](const std::string& out, int64_t steps, bool resume) {
    RlhfOptions o = resumable(out, steps, resume);
    o.ppo.per_device_prompt_batch_size = 3;
    o.ppo.cost_unit = "unsafe_probability";
    o.ppo.target_unsafe_ratio = 0.5;
    o.ppo.calibration_prompts = 6;
    return o;
  };
  RlhfTrainer full(ctx, options("prob-full", 2, false));
  full.train();
  { RlhfTrainer first(ctx, options("prob-split", 1, false)); first.train(); }
  const auto state = nlohmann::json::parse(read_text_file(
      (world.dir / "prob-split" / "checkpoints" / "step-00000001" / "rlhf_state.json").string()));
  const double scale = nlohmann::json::parse(read_text_file(
      (world.dir / "prob-full" / "constraint.json").string()))["cost_scale"].get<double>();
  EXPECT_EQ(state["cost_scale"].get<double>(), scale);
  RlhfTrainer second(ctx, options("prob-split", 2, true));
  second.train();
  EXPECT_EQ(second.lagrange().state().window, full.lagrange().state().window);
  EXPECT_EQ(second.lagrange().log_lambda(), full.lagrange().log_lambda());
  EXPECT_EQ(to_host_f32(second.actor().flat_params()), to_host_f32(full.actor().flat_params()));
  // Another unit on resume is refused by name.
  RlhfOptions other = options("prob-split", 3, true);
  other.ppo.cost_unit = "score";
  const std::string e = error_of([&] { RlhfTrainer t(ctx, other); t.train(); });
  EXPECT_NE(e.find("cost_unit"), std::string::npos) << e;
}

// One step changes the actor and both critics, leaves the frozen models alone, and reports
// finite statistics; the PTX batch joins the actor's step.
TEST_F(RlhfTiny, StepTrainsActorAndCriticsWithPtx) {
  const std::string sft = (world.dir / "sft.json").string();
  write_text_file(sft,
                  "[{\"instruction\": \"how do I bake bread\", \"input\": \"\", \"output\": "
                  "\"mix flour and water\"},\n {\"instruction\": \"plan a trip\", \"input\": \"\","
                  " \"output\": \"pack a bag and go\"}]\n");
  RlhfOptions o = tiny_options(world);
  o.ptx_datasets = {DatasetSpec{sft, 1.0}};
  o.ppo.actor_lr = 1e-3;
  o.ppo.critic_lr = 1e-3;
  o.ppo.actor_lr_warmup_ratio = 0.0;
  o.ppo.critic_lr_warmup_ratio = 0.0;
  RlhfTrainer tr(ctx, o);
  auto snapshot = [](model::LlamaModel& m) { return to_host_f32(m.flat_params()); };
  const auto actor0 = snapshot(tr.actor()), ref0 = snapshot(tr.reference()),
             rm0 = snapshot(tr.reward_model()), cm0 = snapshot(*tr.cost_model());
  const StepStats st = tr.step(tr.prompt_tokens());
  for (const auto& [k, v] : st.metrics()) EXPECT_TRUE(std::isfinite(v)) << k;
  EXPECT_GT(st.ptx_loss, 0.0);
  EXPECT_GT(st.reward_critic_loss, 0.0);
  EXPECT_GT(st.cost_critic_loss, 0.0);
  EXPECT_GT(st.response_length, 0.0);
  EXPECT_GT(st.generation_s, 0.0);
  EXPECT_GT(st.scoring_s, 0.0);
  EXPECT_GT(st.training_s, 0.0);
  EXPECT_GT(st.actor_lr, 0.0);
  EXPECT_NE(snapshot(tr.actor()), actor0);
  EXPECT_EQ(snapshot(tr.reference()), ref0);
  EXPECT_EQ(snapshot(tr.reward_model()), rm0);
  EXPECT_EQ(snapshot(*tr.cost_model()), cm0);
}

// The baselines: PPO learns from R alone with one critic; reward shaping scores R - ν·C.
TEST_F(RlhfTiny, BaselinesShapeTheirRewards) {
  for (PpoAlgorithm algo : {PpoAlgorithm::Ppo, PpoAlgorithm::PpoRewardShaping}) {
    RlhfOptions o = tiny_options(world, algo);
    o.ppo.shaping_nu = 2.0;
    EXPECT_EQ(o.ppo.kl_coeff, 0.02);
    RlhfTrainer tr(ctx, o);
    ScoredRollout s = tr.rollout({tr.prompt_tokens()[0], tr.prompt_tokens()[2]});
    tr.score(s);
    EXPECT_TRUE(s.values_c.empty());
    EXPECT_TRUE(s.costs.empty());
    ASSERT_EQ(s.cost.size(), 2u);  // the CM is still read, for the records
    const auto ends = response_ends(s.batch.dims(), s.batch.mask);
    for (size_t b = 0; b < 2; ++b) {
      const size_t k = size_t(int64_t(b) * s.batch.width + ends[b]);
      const double kl = double(s.logp_old[k]) - double(s.ref_logp[k]);
      const double score = algo == PpoAlgorithm::Ppo ? s.reward[b] : s.reward[b] - 2.0 * s.cost[b];
      EXPECT_NEAR(s.rewards[k], -0.02 * kl + score, 1e-5);
    }
    const StepStats st = tr.step({tr.prompt_tokens()[0], tr.prompt_tokens()[2]});
    EXPECT_FALSE(st.lambda_updated);
    EXPECT_EQ(st.lambda, 1.0);
    EXPECT_EQ(st.cost_critic_loss, 0.0);
    EXPECT_GT(st.reward_critic_loss, 0.0);
  }
}

// The whole loop: records, curves and the trained actor in the output folder.
TEST_F(RlhfTiny, TrainWritesMetricsCurvesAndActor) {
  RlhfOptions o = tiny_options(world);
  o.output_dir = (world.dir / "run").string();
  o.save_actor = true;
  o.ppo.per_device_prompt_batch_size = 4;
  o.ppo.per_device_train_batch_size = 2;
  o.max_steps = 2;
  RlhfTrainer tr(ctx, o);
  tr.train();
  EXPECT_EQ(tr.global_step(), 2);
  const std::string metrics = read_text_file((world.dir / "run" / "metrics.jsonl").string());
  EXPECT_EQ(std::count(metrics.begin(), metrics.end(), '\n'), 2);
  // RL steps count from 1 in the records, as the SFT/RM/CM stages count theirs.
  EXPECT_EQ(nlohmann::json::parse(metrics.substr(0, metrics.find('\n')))["step"], 1);
  for (const char* key : {"\"lambda\"", "\"episode_cost\"", "\"kl\"", "\"response_length\"",
                          "\"reward_advantage\"", "\"cost_return\"", "\"generation_tokens_per_s\"",
                          "\"scoring_s\"", "\"training_tokens_per_s\""})
    EXPECT_NE(metrics.find(key), std::string::npos) << key;
  EXPECT_TRUE(std::filesystem::exists(world.dir / "run" / "curves.png"));
  EXPECT_TRUE(std::filesystem::exists(world.dir / "run" / "beaver.json"));
  EXPECT_TRUE(std::filesystem::exists(world.dir / "run" / "tokenizer.model"));
}

// curves.png shows λ and the cost critic only for PPO-Lag: the baselines have neither, even
// when their records carry the fields.
TEST(RlhfCurves, PanelsFollowTheAlgorithm) {
  test::TempDir tmp;
  const std::string path = tmp / "metrics.jsonl";
  {
    std::ofstream f(path);
    for (int s = 1; s <= 3; ++s)
      f << "{\"step\": " << s << ", \"lambda\": 1, \"episode_cost\": 0.5, \"reward\": 1, "
        << "\"cost\": 0.2, \"actor_loss\": 0.1, \"reward_critic_loss\": 0.3, "
        << "\"cost_critic_loss\": 0, \"kl\": 0.01}\n";
  }
  auto describe = [&](PpoAlgorithm algo) {
    std::vector<std::string> out;
    for (const auto& p : rl_curve_panels(algo, path, -0.5)) {
      std::string d = p.title + ":";
      for (const auto& s : p.series) d += " " + s.name;
      out.push_back(d);
    }
    return out;
  };
  const std::vector<std::string> baseline = {"episode cost J_C: episode_cost",
                                             "reward and cost: reward cost",
                                             "KL (sum per sequence): kl",
                                             "losses: actor_loss reward_critic_loss"};
  EXPECT_EQ(describe(PpoAlgorithm::Ppo), baseline);
  EXPECT_EQ(describe(PpoAlgorithm::PpoRewardShaping), baseline);
  EXPECT_EQ(describe(PpoAlgorithm::PpoLag),
            (std::vector<std::string>{"Lagrange multiplier: lambda",
                                      "episode cost J_C: episode_cost threshold",
                                      "reward and cost: reward cost", "KL (sum per sequence): kl",
                                      "losses: actor_loss reward_critic_loss cost_critic_loss"}));
}

// λ weighs the cost advantage in the actor's update and nowhere else: two runs that differ
// only in (a frozen) λ train different actors but identical critics.
TEST_F(RlhfTiny, LambdaEntersTheActorUpdateOnly) {
  auto run = [&](double lambda) {
    RlhfOptions o = tiny_options(world);
    o.ppo.lambda_init = lambda;
    o.ppo.lambda_lr = 0.0;
    o.ppo.actor_lr = 1e-3;
    o.ppo.critic_lr = 1e-3;
    o.ppo.actor_lr_warmup_ratio = 0.0;
    o.ppo.critic_lr_warmup_ratio = 0.0;
    o.ppo.update_iters = 2;  // the second pass sees a changed actor: ratios move off 1
    auto tr = std::make_unique<RlhfTrainer>(ctx, o);
    (void)tr->step({tr->prompt_tokens()[0], tr->prompt_tokens()[1], tr->prompt_tokens()[2]});
    return tr;
  };
  const auto a = run(1.0), b = run(4.0);
  EXPECT_NE(to_host_f32(a->actor().flat_params()), to_host_f32(b->actor().flat_params()));
  EXPECT_EQ(to_host_f32(a->reward_critic().flat_params()),
            to_host_f32(b->reward_critic().flat_params()));
  EXPECT_EQ(to_host_f32(a->cost_critic()->flat_params()),
            to_host_f32(b->cost_critic()->flat_params()));
}

// A run stopped after 2 steps and resumed for 2 more ends exactly where an uninterrupted run of
// 4 steps does: same actor, critics, λ, and the same metrics (times aside).
TEST_F(RlhfTiny, ResumeContinuesBitwise) {
  const std::string sft = (world.dir / "sft_resume.json").string();
  write_text_file(sft,
                  "[{\"instruction\": \"add two and three\", \"input\": \"\", \"output\": \"five\"},"
                  "\n {\"instruction\": \"plan a trip\", \"input\": \"\", \"output\": \"go\"},\n"
                  " {\"instruction\": \"water a plant\", \"input\": \"\", \"output\": \"daily\"}]\n");
  auto options = [&](const std::string& out, int64_t steps, bool resume) {
    RlhfOptions o = resumable(out, steps, resume);
    o.ptx_datasets = {DatasetSpec{sft, 1.0}};
    o.ppo.per_device_prompt_batch_size = 4;  // 6 prompts: steps cross an epoch boundary
    o.ppo.per_device_train_batch_size = 2;
    o.ppo.epochs = 2;
    o.ppo.critic_lr = 1e-3;
    return o;
  };
  auto strip_times = [](const std::string& text) {
    std::string out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      for (const char* k : {"time_s", "generation_s", "scoring_s", "training_s",
                            "generation_tokens_per_s", "scoring_tokens_per_s",
                            "training_tokens_per_s"})
        j.erase(k);
      out += j.dump() + "\n";
    }
    return out;
  };
  RlhfTrainer full(ctx, options("full", 4, false));
  full.train();
  {
    RlhfTrainer first(ctx, options("split", 3, false));
    first.train();
    // Without --resume, a folder with checkpoints is refused.
    const std::string e = error_of([&] { RlhfTrainer again(ctx, options("split", 4, false)); again.train(); });
    EXPECT_NE(e.find("--resume"), std::string::npos) << e;
  }
  RlhfTrainer second(ctx, options("split", 4, true));
  second.train();
  EXPECT_EQ(second.global_step(), 4);
  EXPECT_EQ(to_host_f32(second.actor().flat_params()), to_host_f32(full.actor().flat_params()));
  EXPECT_EQ(to_host_f32(second.reward_critic().flat_params()),
            to_host_f32(full.reward_critic().flat_params()));
  EXPECT_EQ(to_host_f32(second.cost_critic()->flat_params()),
            to_host_f32(full.cost_critic()->flat_params()));
  EXPECT_EQ(second.lagrange().log_lambda(), full.lagrange().log_lambda());
  EXPECT_EQ(strip_times(read_text_file((world.dir / "split" / "metrics.jsonl").string())),
            strip_times(read_text_file((world.dir / "full" / "metrics.jsonl").string())));
  // A resume with other settings is refused by name.
  RlhfOptions other = options("split", 5, true);
  other.ppo.kl_coeff = 0.05;
  const std::string e = error_of([&] { RlhfTrainer t(ctx, other); t.train(); });
  EXPECT_NE(e.find("kl_coeff"), std::string::npos) << e;
}

// The updates optimise what they should: PPO raises the reward model's score, and PPO-Lag
// with a large frozen λ lowers the cost model's (means over the first and last steps).
TEST_F(RlhfTiny, UpdatesMoveTheScoresTheRightWay) {
  auto run = [&](PpoAlgorithm algo, bool want_reward) {
    RlhfOptions o = tiny_options(world, algo);
    o.ppo.per_device_prompt_batch_size = 6;
    o.ppo.per_device_train_batch_size = 6;
    o.ppo.actor_lr = 3e-3;
    o.ppo.actor_lr_scheduler_type = "constant";
    o.ppo.actor_lr_warmup_ratio = 0.0;
    o.ppo.critic_lr = 3e-3;
    o.ppo.critic_lr_warmup_ratio = 0.0;
    o.ppo.update_iters = 2;
    o.ppo.lambda_init = 5.0;
    o.ppo.lambda_lr = 0.0;
    RlhfTrainer tr(ctx, o);
    const int steps = 30, window = 6;
    double first = 0, last = 0;
    for (int k = 0; k < steps; ++k) {
      const StepStats st = tr.step(tr.prompt_tokens());
      const double v = want_reward ? st.reward : st.cost;
      if (k < window) first += v / window;
      if (k >= steps - window) last += v / window;
    }
    return std::pair{first, last};
  };
  const auto [r0, r1] = run(PpoAlgorithm::Ppo, true);
  EXPECT_GT(r1, r0 + 0.5) << "PPO: reward " << r0 << " -> " << r1;
  const auto [c0, c1] = run(PpoAlgorithm::PpoLag, false);
  EXPECT_LT(c1, c0 - 0.3) << "PPO-Lag: cost " << c0 << " -> " << c1;
}

// ---- Non-finite values (train/nonfinite.h) -----------------------------------------------------
// A NaN cost (the CM's score-head bias poisoned for one step) is caught at that step, before it
// can reach λ. Under stop the run ends naming the actor, the step and the cost. Under skip the
// actor and the cost critic keep their weights and λ its state (window and log λ), the reward
// critic, whose inputs are finite, trains on, and the next finite step trains everything again.
TEST_F(RlhfTiny, NonfiniteCostIsCaughtAtItsStepAndLeavesLambdaAsItWas) {
  RlhfOptions o = tiny_options(world);
  o.ppo.update_iters = 1;  // 2 micro-steps per RL step (6 prompts, micro-batches of 3)
  // Learning rates that do not end with the (one-step) run the schedules are planned for.
  o.ppo.actor_lr = o.ppo.critic_lr = 1e-3;
  o.ppo.actor_lr_scheduler_type = o.ppo.critic_lr_scheduler_type = "constant";
  o.ppo.actor_lr_warmup_ratio = o.ppo.critic_lr_warmup_ratio = 0.0;
  {
    RlhfTrainer tr(ctx, o);
    tr.cost_model()->param("score_head.bias").ptr<float>()[0] = std::nanf("");
    const std::vector<std::vector<int32_t>> batch(tr.prompt_tokens().begin(),
                                                  tr.prompt_tokens().begin() + 6);
    const std::string e = error_of([&] { tr.step(batch); });
    EXPECT_NE(e.find("ppo-lag actor: step 1: cost is "), std::string::npos) << e;
    EXPECT_NE(e.find("--nonfinite stop"), std::string::npos) << e;
    EXPECT_EQ(tr.lagrange().window_count(), 0u);
  }
  o.nonfinite = {NonfinitePolicy::Skip, 4};
  RlhfTrainer tr(ctx, o);
  const std::vector<std::vector<int32_t>> batch(tr.prompt_tokens().begin(),
                                                tr.prompt_tokens().begin() + 6);
  float& bias = tr.cost_model()->param("score_head.bias").ptr<float>()[0];
  const float b0 = bias;
  EXPECT_EQ(tr.step(batch).skipped_steps, 0);
  struct Snapshot {
    std::vector<float> actor, reward_critic, cost_critic, window;
    double log_lambda;
  };
  auto snapshot = [&] {
    return Snapshot{to_host_f32(tr.actor().flat_params()),
                    to_host_f32(tr.reward_critic().flat_params()),
                    to_host_f32(tr.cost_critic()->flat_params()), tr.lagrange().state().window,
                    tr.lagrange().log_lambda()};
  };
  const Snapshot s0 = snapshot();
  bias = std::nanf("");
  const StepStats st = tr.step(batch);
  EXPECT_EQ(st.skipped_steps, 4);  // the actor's and the cost critic's 2 micro-steps
  EXPECT_FALSE(st.lambda_updated);
  const Snapshot s1 = snapshot();
  EXPECT_EQ(s1.actor, s0.actor);
  EXPECT_EQ(s1.cost_critic, s0.cost_critic);
  EXPECT_NE(s1.reward_critic, s0.reward_critic);
  EXPECT_EQ(s1.window, s0.window);
  EXPECT_EQ(s1.log_lambda, s0.log_lambda);
  bias = b0;
  const StepStats st2 = tr.step(batch);
  EXPECT_EQ(st2.skipped_steps, 4);  // counted over the whole run, none added
  EXPECT_TRUE(st2.lambda_updated);
  const Snapshot s2 = snapshot();
  EXPECT_NE(s2.actor, s1.actor);
  EXPECT_NE(s2.cost_critic, s1.cost_critic);
  EXPECT_NE(s2.log_lambda, s1.log_lambda);
  EXPECT_EQ(s2.window.size(), s1.window.size() + 6);
  for (float x : s2.actor) ASSERT_TRUE(std::isfinite(x));
}

// λ overflowing (an absurd --lambda_lr, no cap, a violated threshold) is named as such at the
// micro-step whose update produced it, not as the NaN actor loss it turns into.
TEST_F(RlhfTiny, NonfiniteLambdaIsNamedAtItsStep) {
  RlhfOptions o = tiny_options(world);
  o.ppo.lambda_lr = 1e300;
  o.ppo.lambda_max = 0.0;
  o.ppo.threshold = -100.0;
  RlhfTrainer tr(ctx, o);
  const std::vector<std::vector<int32_t>> batch(tr.prompt_tokens().begin(),
                                                tr.prompt_tokens().begin() + 6);
  const std::string e = error_of([&] { tr.step(batch); });
  EXPECT_NE(e.find("ppo-lag actor: step 1: lambda is inf"), std::string::npos) << e;
  EXPECT_NE(e.find("last finite values: none (the first step)"), std::string::npos) << e;
}


// The first training micro-step of each RL step backpropagates from the scoring forward's
// activations (--reuse_scoring_forward): with it on and off, every algorithm makes the same
// steps bitwise (weights of the actor and critics, λ, losses), with and without activation
// recomputation, with PTX after the reused backward, over micro-batches of unequal size and
// two PPO epochs.
TEST_F(RlhfTiny, ReusedScoringForwardGivesTheSameStep) {
  const std::string sft = (world.dir / "sft_reuse.json").string();
  write_text_file(sft,
                  "[{\"instruction\": \"add two and three\", \"input\": \"\", \"output\": \"five\"},"
                  "\n {\"instruction\": \"plan a trip\", \"input\": \"\", \"output\": \"go\"}]\n");
  struct Run {
    std::vector<float> actor, critic_r, critic_c;
    double log_lambda = 0;
    std::vector<StepStats> steps;
  };
  auto run = [&](PpoAlgorithm algo, bool recompute, bool reuse) {
    RlhfOptions o = tiny_options(world, algo);
    o.ptx_datasets = {DatasetSpec{sft, 1.0}};
    o.ppo.per_device_prompt_batch_size = 5;  // micro-batches of 3 and 2
    o.ppo.update_iters = 2;
    o.ppo.actor_lr = 1e-3;
    o.ppo.critic_lr = 1e-3;
    o.ppo.actor_gradient_checkpointing = recompute;
    o.ppo.critic_gradient_checkpointing = recompute;
    o.reuse_scoring_forward = reuse;
    RlhfTrainer tr(ctx, o);
    Run out;
    const auto& p = tr.prompt_tokens();
    for (size_t k = 0; k < 3; ++k) {
      std::vector<std::vector<int32_t>> batch;
      for (size_t j = 0; j < 5; ++j) batch.push_back(p[(5 * k + j) % p.size()]);
      out.steps.push_back(tr.step(batch));
    }
    out.actor = to_host_f32(tr.actor().flat_params());
    out.critic_r = to_host_f32(tr.reward_critic().flat_params());
    if (tr.cost_critic()) out.critic_c = to_host_f32(tr.cost_critic()->flat_params());
    out.log_lambda = tr.lagrange().log_lambda();
    return out;
  };
  for (PpoAlgorithm algo : {PpoAlgorithm::PpoLag, PpoAlgorithm::Ppo, PpoAlgorithm::PpoRewardShaping})
    for (bool recompute : {false, true}) {
      SCOPED_TRACE(std::string(ppo_algorithm_name(algo)) + (recompute ? ", recompute" : ""));
      const Run on = run(algo, recompute, true), off = run(algo, recompute, false);
      EXPECT_EQ(on.actor, off.actor);
      EXPECT_EQ(on.critic_r, off.critic_r);
      EXPECT_EQ(on.critic_c, off.critic_c);
      EXPECT_EQ(on.log_lambda, off.log_lambda);
      ASSERT_EQ(on.steps.size(), off.steps.size());
      for (size_t k = 0; k < on.steps.size(); ++k) {
        EXPECT_EQ(on.steps[k].actor_loss, off.steps[k].actor_loss) << "step " << k;
        EXPECT_EQ(on.steps[k].ptx_loss, off.steps[k].ptx_loss) << "step " << k;
        EXPECT_EQ(on.steps[k].approx_kl, off.steps[k].approx_kl) << "step " << k;
        EXPECT_EQ(on.steps[k].actor_grad_norm, off.steps[k].actor_grad_norm) << "step " << k;
        EXPECT_EQ(on.steps[k].reward_critic_loss, off.steps[k].reward_critic_loss) << "step " << k;
        EXPECT_EQ(on.steps[k].cost_critic_loss, off.steps[k].cost_critic_loss) << "step " << k;
        EXPECT_EQ(on.steps[k].reward, off.steps[k].reward) << "step " << k;
      }
      EXPECT_GT(on.steps.back().actor_grad_norm, 0.0);
    }
}

}  // namespace
}  // namespace beaver::train
