// The SFT / reward-model / cost-model stages (train/stages.h) on a tiny random LLaMA and a tiny
// synthetic world: SFT lowers the loss clearly, the reward model ranks held-out separable pairs,
// the cost model gets the signs right, a run resumed from a checkpoint reproduces the
// uninterrupted run bitwise (weights and metrics), bad data is reported by file:line or
// skipped, and a resume with other flags is refused.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "csrc/stop_signal.h"
#include "format_fixtures.h"
#include "model/loader.h"
#include "train/plot.h"
#include "train/stages.h"
#include "train/trainer_state.h"
#include "train_fixtures.h"

namespace beaver {
namespace {

namespace fs = std::filesystem;

class Trainer : public ::testing::Test {
 protected:
  void SetUp() override { test::write_tiny_model(tmp / "init", 1); }

  train::StageArgs args(train::Stage s, const std::string& out) const {
    train::StageArgs a = test::tiny_stage_args(s, tmp.str(), out);
    a.lr_warmup_ratio = 0.03;
    return a;
  }

  test::TempDir tmp;
};

// metrics.jsonl lines without the wall-clock field.
std::vector<nlohmann::json> metrics_without_time(const std::string& path) {
  std::ifstream f(path);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(f, line)) {
    auto j = nlohmann::json::parse(line);
    j.erase("time_s");
    out.push_back(j);
  }
  return out;
}

TEST_F(Trainer, SftLowersTheLoss) {
  test::write_tiny_sft(tmp / "sft.json", 64);
  test::write_tiny_sft(tmp / "sft_eval.json", 16, 64);
  auto a = args(train::Stage::SFT, "sft");
  a.train_datasets = {tmp / "sft.json"};
  a.eval_datasets = {tmp / "sft_eval.json"};
  a.epochs = 8;
  a.per_device_train_batch_size = 8;
  a.per_device_eval_batch_size = 16;
  a.learning_rate = 1e-2;
  a.eval_interval = 64;
  const train::StageResult r = train::run_stage(a);
  EXPECT_EQ(r.steps, 64);
  ASSERT_TRUE(r.eval.count("eval_loss"));
  EXPECT_GT(r.first_loss, 4.0);  // about ln(121) at random init
  EXPECT_LT(r.eval.at("eval_loss"), 0.4 * r.first_loss)
      << "first train loss " << r.first_loss << ", eval loss " << r.eval.at("eval_loss");
  EXPECT_NEAR(r.eval.at("eval_perplexity"), std::exp(r.eval.at("eval_loss")), 1e-9);
  // The final model is a loadable causal LM; metrics.jsonl has one line per step + 1 eval and
  // reads back for `beaver plot`.
  model::ModelKind kind{};
  model::checkpoint_config(a.output_dir, &kind);
  EXPECT_EQ(kind, model::ModelKind::CausalLM);
  EXPECT_TRUE(fs::exists(a.output_dir + "/tokenizer.model"));
  EXPECT_EQ(train::count_lines(a.output_dir + "/metrics.jsonl"), 64 + 1);
  const auto series = plot::read_metrics(a.output_dir + "/metrics.jsonl", "step", {"loss", "lr"});
  ASSERT_EQ(series.size(), 2u);
  EXPECT_EQ(series[0].x.size(), 64u);
  // Every stage draws its curves; the loss panel overlays the training and the eval loss.
  EXPECT_TRUE(fs::exists(a.output_dir + "/curves.png"));
  const auto panels = train::stage_curve_panels(a.output_dir + "/metrics.jsonl");
  ASSERT_FALSE(panels.empty());
  EXPECT_EQ(panels[0].title, "loss");
  ASSERT_EQ(panels[0].series.size(), 2u);
  EXPECT_EQ(panels[0].series[1].name, "eval_loss");
  EXPECT_EQ(panels[0].series[1].x, (std::vector<double>{64}));
}

TEST_F(Trainer, RewardModelRanksHeldOutPairs) {
  test::write_tiny_pairs(tmp / "train.jsonl", 64, 11);
  test::write_tiny_pairs(tmp / "test.jsonl", 40, 12);
  auto a = args(train::Stage::RM, "rm");
  a.train_datasets = {tmp / "train.jsonl"};
  a.eval_datasets = {tmp / "test.jsonl"};
  a.epochs = 3;
  a.per_device_train_batch_size = 8;
  a.per_device_eval_batch_size = 20;
  a.learning_rate = 2e-3;
  a.weight_decay = 0.1;
  const train::StageResult r = train::run_stage(a);
  ASSERT_TRUE(r.eval.count("eval_accuracy"));
  EXPECT_GT(r.eval.at("eval_accuracy"), 0.9);
  EXPECT_GT(r.eval.at("eval_better_mean"), r.eval.at("eval_worse_mean"));
  model::ModelKind kind{};
  model::checkpoint_config(a.output_dir, &kind);
  EXPECT_EQ(kind, model::ModelKind::ScoreModel);
  EXPECT_TRUE(fs::exists(a.output_dir + "/curves.png"));
  std::vector<std::string> titles;
  for (const auto& p : train::stage_curve_panels(a.output_dir + "/metrics.jsonl"))
    titles.push_back(p.title);
  EXPECT_EQ(titles, (std::vector<std::string>{"loss", "accuracy", "mean reward", "learning rate",
                                              "gradient norm"}));
}

TEST_F(Trainer, CostModelGetsTheSigns) {
  test::write_tiny_pairs(tmp / "train.jsonl", 64, 21);
  test::write_tiny_pairs(tmp / "test.jsonl", 40, 22);
  auto a = args(train::Stage::CM, "cm");
  a.train_datasets = {tmp / "train.jsonl"};
  a.eval_datasets = {tmp / "test.jsonl"};
  a.epochs = 3;
  a.per_device_train_batch_size = 8;
  a.per_device_eval_batch_size = 20;
  a.learning_rate = 2e-3;
  a.weight_decay = 0.1;
  const train::StageResult r = train::run_stage(a);
  ASSERT_TRUE(r.eval.count("eval_sign_accuracy"));
  EXPECT_GT(r.eval.at("eval_sign_accuracy"), 0.9);
  EXPECT_GT(r.eval.at("eval_accuracy"), 0.9);
  EXPECT_GT(r.eval.at("eval_unsafer_mean"), 0.0);
  EXPECT_LT(r.eval.at("eval_safer_mean"), 0.0);
  EXPECT_EQ(r.eval.at("eval_inconsistent_pairs"), 0.0);
  EXPECT_TRUE(fs::exists(a.output_dir + cat("/eval/cost-histogram-step-", r.steps, ".png")));
}

TEST_F(Trainer, TokenWiseRewardLossTrains) {
  test::write_tiny_pairs(tmp / "train.jsonl", 48, 31);
  auto a = args(train::Stage::RM, "rmtw");
  a.train_datasets = {tmp / "train.jsonl"};
  a.eval_split_ratio = 0.25;
  a.epochs = 2;
  a.per_device_train_batch_size = 6;
  a.per_device_eval_batch_size = 12;
  a.learning_rate = 2e-3;
  a.score_loss.loss_type = train::ScoreLossType::TokenWise;
  const train::StageResult r = train::run_stage(a);
  EXPECT_LT(r.last_loss, r.first_loss);
  EXPECT_GT(r.eval.at("eval_accuracy"), 0.75);
}

TEST_F(Trainer, ResumeReproducesTheRunBitwise) {
  // 20 examples, batch 4, accumulation 2: 5 micro-batches per epoch, so step 3 spans the epoch
  // boundary; per-epoch evaluation happens with a gradient pending.
  test::write_tiny_sft(tmp / "sft.json", 20);
  test::write_tiny_sft(tmp / "sft_eval.json", 8, 20);
  auto a = args(train::Stage::SFT, "straight");
  a.train_datasets = {tmp / "sft.json"};
  a.eval_datasets = {tmp / "sft_eval.json"};
  a.epochs = 2;
  a.per_device_train_batch_size = 4;
  a.gradient_accumulation_steps = 2;
  a.learning_rate = 2e-3;
  a.weight_decay = 0.01;
  a.save_interval = 1;
  const train::StageResult straight = train::run_stage(a);
  EXPECT_EQ(straight.steps, 5);

  auto b = a;
  b.output_dir = tmp / "resumed";
  {
    // Stopped by a signal (it arrives before the first step: the run stops after it). A cap
    // by --max_steps would not do: it sizes the learning-rate schedule.
    const StopSignalGuard guard;
    b.stop = &guard;
    std::raise(SIGINT);
    EXPECT_THROW(train::run_stage(b), Interrupted);
    b.stop = nullptr;
  }
  // A crash after the checkpoint may leave extra metrics lines: the resume cuts them off.
  std::ofstream(b.output_dir + "/metrics.jsonl", std::ios::app) << "{\"step\": 99}\n";
  b.resume = true;
  EXPECT_EQ(train::run_stage(b).steps, 5);

  EXPECT_EQ(test::read_bytes(a.output_dir + "/model.safetensors"),
            test::read_bytes(b.output_dir + "/model.safetensors"));
  const auto ma = metrics_without_time(a.output_dir + "/metrics.jsonl");
  const auto mb = metrics_without_time(b.output_dir + "/metrics.jsonl");
  ASSERT_EQ(ma.size(), 5u + 2u);
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i) EXPECT_EQ(ma[i], mb[i]) << "metrics line " << i + 1;
}

TEST_F(Trainer, ResumeRefusesOtherFlagsAndFreshRunsRefuseOldOnes) {
  test::write_tiny_sft(tmp / "sft.json", 8);
  auto a = args(train::Stage::SFT, "run");
  a.train_datasets = {tmp / "sft.json"};
  a.epochs = 1;
  a.per_device_train_batch_size = 4;
  a.max_steps = 1;
  train::run_stage(a);
  auto fresh = a;
  test::expect_error([&] { train::run_stage(fresh); }, {"--resume"});
  auto other = a;
  other.resume = true;
  other.learning_rate = 1e-3;
  test::expect_error([&] { train::run_stage(other); }, {"learning_rate", "trainer_state.json"});
  auto rm = a;
  rm.resume = true;
  rm.stage = train::Stage::RM;
  rm.train_datasets = {tmp / "sft.json"};
  EXPECT_THROW(train::run_stage(rm), Error);
}

TEST_F(Trainer, BadRecordsStopWithFileAndLineOrAreSkipped) {
  {
    std::ofstream f(tmp / "sft.jsonl");
    for (int i = 0; i < 6; ++i) {
      if (i == 2) {
        f << "{\"instruction\": \"tell me\", \"output\": 5}\n";  // line 3: output not a string
        continue;
      }
      f << nlohmann::json{{"instruction", test::tiny_prompt(size_t(i))},
                          {"output", test::tiny_answer(size_t(i))}}
                .dump()
        << "\n";
    }
  }
  auto a = args(train::Stage::SFT, "bad");
  a.train_datasets = {tmp / "sft.jsonl"};
  a.epochs = 1;
  a.per_device_train_batch_size = 5;
  test::expect_error([&] { train::run_stage(a); }, {"sft.jsonl:3"});
  a.bad_record = train::BadRecordPolicy::Skip;
  const train::StageResult r = train::run_stage(a);
  EXPECT_EQ(r.steps, 1);  // 5 usable records, one batch
  EXPECT_GT(r.train_tokens, 0);
}

}  // namespace
}  // namespace beaver
