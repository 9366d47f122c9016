// The life cycle of an SFT / RM / CM run (train/stages.h) around its steps: --max_steps sizes
// the schedule (a capped run follows the learning rates of a run that long), a resume of a run
// that already reached its last step trains and writes nothing, --resume with nothing to resume
// is an error, and a stop signal ends the run after the current step with a checkpoint from
// which a resume ends where the uninterrupted run does.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "csrc/stop_signal.h"
#include "train/checkpoint_dir.h"
#include "train/stages.h"
#include "format_fixtures.h"
#include "testutil.h"
#include "train_fixtures.h"

namespace beaver {
namespace {

namespace fs = std::filesystem;

class StageLifecycle : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_tiny_model(tmp / "init", 1);
    test::write_tiny_sft(tmp / "sft.json", 8);
  }

  train::StageArgs args(const std::string& out) const {
    train::StageArgs a = test::tiny_stage_args(train::Stage::SFT, tmp.str(), out);
    a.train_datasets = {tmp / "sft.json"};
    a.per_device_train_batch_size = 2;  // 8 examples: 4 steps per epoch
    a.learning_rate = 1e-3;
    a.lr_warmup_ratio = 0.5;
    a.lr_scheduler_type = train::ScheduleKind::Linear;
    return a;
  }

  test::TempDir tmp;
};

// The "lr" of every step record of a metrics file, in order.
std::vector<double> step_lrs(const std::string& path) {
  std::ifstream f(path);
  std::vector<double> out;
  std::string line;
  while (std::getline(f, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("lr")) out.push_back(j["lr"].get<double>());
  }
  return out;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(f, line);) out.push_back(line);
  return out;
}

std::set<std::string> entries(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

TEST_F(StageLifecycle, MaxStepsSizesWarmupAndDecay) {
  auto capped = args("capped");
  capped.epochs = 3;  // 12 steps of data
  capped.max_steps = 4;
  EXPECT_EQ(train::run_stage(capped).steps, 4);
  auto exact = args("exact");
  exact.epochs = 1;  // 4 steps of data
  EXPECT_EQ(train::run_stage(exact).steps, 4);
  const auto lr_capped = step_lrs(capped.output_dir + "/metrics.jsonl");
  const auto lr_exact = step_lrs(exact.output_dir + "/metrics.jsonl");
  ASSERT_EQ(lr_capped.size(), 4u);
  ASSERT_EQ(lr_capped, lr_exact);
  // The linear schedule reaches its end within the capped run.
  EXPECT_LE(lr_capped.back(), 0.5 * capped.learning_rate);
}

TEST_F(StageLifecycle, ResumingACompleteRunDoesNothing) {
  auto a = args("done");
  a.epochs = 3;
  a.max_steps = 2;
  a.save_interval = 1;
  EXPECT_EQ(train::run_stage(a).steps, 2);
  const fs::path ckpts = fs::path(a.output_dir) / "checkpoints";
  const auto metrics = lines_of(a.output_dir + "/metrics.jsonl");
  const auto before = entries(ckpts);
  const auto model_time = fs::last_write_time(a.output_dir + "/model.safetensors");
  a.resume = true;
  EXPECT_EQ(train::run_stage(a).steps, 2);
  EXPECT_EQ(lines_of(a.output_dir + "/metrics.jsonl"), metrics);
  EXPECT_EQ(entries(ckpts), before);
  EXPECT_EQ(fs::last_write_time(a.output_dir + "/model.safetensors"), model_time);
  // Raising --max_steps goes on from there.
  a.max_steps = 3;
  EXPECT_EQ(train::run_stage(a).steps, 3);
}

TEST_F(StageLifecycle, ResumeWithNothingToResumeIsAnError) {
  auto a = args("empty");
  a.resume = true;
  test::expect_error([&] { train::run_stage(a); }, {"nothing to resume", "without --resume"});
  EXPECT_FALSE(fs::exists(a.output_dir + "/metrics.jsonl"));
}

TEST_F(StageLifecycle, StopSignalCheckpointsAfterTheStepAndResumes) {
  auto straight = args("straight");
  straight.epochs = 2;
  train::run_stage(straight);

  auto a = args("stopped");
  a.epochs = 2;
  {
    const StopSignalGuard guard;
    a.stop = &guard;
    std::raise(SIGINT);  // arrives before the first step: the run stops after it
    try {
      train::run_stage(a);
      ADD_FAILURE() << "expected Interrupted";
    } catch (const Interrupted& e) {
      EXPECT_EQ(e.exit_code(), 130);
      const std::string m = e.what();
      EXPECT_NE(m.find("after step 1 of 8"), std::string::npos) << m;
      EXPECT_NE(m.find("--resume"), std::string::npos) << m;
      EXPECT_NE(m.find(train::latest_checkpoint(a.output_dir + "/checkpoints")), std::string::npos)
          << m;
    }
  }
  EXPECT_EQ(fs::path(train::latest_checkpoint(a.output_dir + "/checkpoints")).filename(), "step-00000001");
  EXPECT_FALSE(fs::exists(a.output_dir + "/beaver.json"));
  a.stop = nullptr;
  a.resume = true;
  EXPECT_EQ(train::run_stage(a).steps, 8);
  EXPECT_EQ(test::read_bytes(straight.output_dir + "/model.safetensors"),
            test::read_bytes(a.output_dir + "/model.safetensors"));
}

}  // namespace
}  // namespace beaver
