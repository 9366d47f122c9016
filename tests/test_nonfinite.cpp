// Non-finite values never reach the weights or a file (train/nonfinite.h): the guard's stop and
// skip policies, an optimizer step that skips a NaN gradient and recovers on the next finite one,
// an SFT run that diverges stopping at the step with the previous checkpoint still latest, the
// consecutive-skip limit, a starting model holding NaN refused, and checkpoint / optimizer
// writers refusing non-finite tensors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "csrc/atomic_file.h"
#include "csrc/log.h"
#include "format_fixtures.h"
#include "model/checkpoint.h"
#include "model/loader.h"
#include "train/checkpoint_dir.h"
#include "train/init_model.h"
#include "train/nonfinite.h"
#include "train/optimizer.h"
#include "train/stages.h"
#include "train_fixtures.h"

namespace beaver {
namespace {

namespace fs = std::filesystem;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(NonfiniteGuard, StopNamesTheStepTheQuantityAndTheLastFiniteValues) {
  train::NonfiniteGuard g("train sft", {});
  g.observe("loss", 2.5);
  EXPECT_TRUE(g.admit(0, 1.25));
  g.observe("loss", kNaN);
  test::expect_error([&] { g.admit(1, 0.5); },
                     {"train sft: step 2: loss is nan", "--nonfinite stop", "loss 2.5 (step 1)",
                      "grad_norm 1.25 (step 1)", "latest"});
  // A finite loss with an infinite gradient norm is caught too.
  train::NonfiniteGuard h("ppo-lag actor", {});
  h.observe("lambda", 1.0);
  test::expect_error([&] { h.admit(0, kInf); },
                     {"ppo-lag actor: step 1: grad_norm is inf", "none (the first step)"});
}

TEST(NonfiniteGuard, SkipCountsAndStopsAfterTheConsecutiveLimit) {
  train::NonfiniteGuard g("train rm", {train::NonfinitePolicy::Skip, 2});
  EXPECT_TRUE(g.admit(0, 1.0));
  g.observe("loss", kNaN);
  EXPECT_FALSE(g.admit(1, 1.0));
  EXPECT_TRUE(g.last_skipped());
  EXPECT_EQ(g.consecutive(), 1);
  EXPECT_TRUE(g.admit(1, 1.0));  // finite again: the run of skips ends
  EXPECT_EQ(g.consecutive(), 0);
  EXPECT_EQ(g.skipped(), 1);
  EXPECT_FALSE(g.admit(2, kNaN));
  EXPECT_FALSE(g.admit(2, -kInf));
  test::expect_error([&] { g.admit(2, kNaN); }, {"3 consecutive steps skipped",
                                                  "--max_consecutive_skips 2"});
  EXPECT_EQ(train::parse_nonfinite_policy("skip"), train::NonfinitePolicy::Skip);
  test::expect_error([] { train::parse_nonfinite_policy("ignore"); }, {"--nonfinite", "ignore"});
  test::expect_error([] { train::NonfiniteGuard("x", {train::NonfinitePolicy::Skip, 0}); },
                     {"--max_consecutive_skips"});
}

TEST(Nonfinite, CountsOnTheExponentBitsOfEachFloatDtype) {
  const float f[] = {1.0f, std::nanf(""), -INFINITY, 3e38f, 0.0f};
  auto c = model::count_nonfinite(DType::F32, {reinterpret_cast<const uint8_t*>(f), sizeof f});
  EXPECT_EQ(c.count, 2);
  EXPECT_EQ(c.first, 1);
  const uint16_t bf[] = {0x3f80, 0x7f7f, 0xff80, 0x7fc1};  // 1, max, -inf, nan
  c = model::count_nonfinite(DType::BF16, {reinterpret_cast<const uint8_t*>(bf), sizeof bf});
  EXPECT_EQ(c.count, 2);
  EXPECT_EQ(c.first, 2);
  const uint16_t h[] = {0x7bff, 0x3c00, 0x7c00};  // 65504, 1, inf
  c = model::count_nonfinite(DType::F16, {reinterpret_cast<const uint8_t*>(h), sizeof h});
  EXPECT_EQ(c.count, 1);
  EXPECT_EQ(c.first, 2);
}

class NonfiniteModel : public ::testing::Test {
 protected:
  void SetUp() override { vocab = test::write_tiny_model(tmp / "init", 1); }

  train::StageArgs sft(const std::string& out) const {
    train::StageArgs a = test::tiny_stage_args(train::Stage::SFT, tmp.str(), out);
    a.train_datasets = {tmp / "sft.json"};
    a.epochs = 4;
    a.per_device_train_batch_size = 4;
    a.gradient_accumulation_steps = 1;
    a.save_interval = 1;
    a.write_final_model = true;
    return a;
  }

  // The tiny model of the fixture's vocabulary: for training (4 positions, gradients), or only
  // to load a checkpoint into.
  model::LlamaModel tiny_model(bool training = true) {
    model::LlamaOptions o;
    o.max_batch = 1;
    o.max_seq = training ? 4 : 1;
    o.training = training;
    return model::LlamaModel(ctx, test::tiny_config(vocab), o);
  }

  test::TempDir tmp;
  Context ctx = Context::cpu(1);
  int64_t vocab = 0;
};

// One optimizer step under --nonfinite skip with a NaN in the gradients leaves weights, moments
// and the step counter exactly as they were; the next, finite, step is applied as usual.
TEST_F(NonfiniteModel, SkipDropsTheStepAndRecoversOnTheNextFiniteOne) {
  model::LlamaModel m = tiny_model();
  train::random_init(m, 5);
  train::OptimizerConfig oc;
  oc.schedule.base_lr = 1e-2;
  oc.schedule.total_steps = 10;
  train::Optimizer opt(m, oc);
  train::NonfiniteGuard guard("test", {train::NonfinitePolicy::Skip, 3});
  opt.set_guard(&guard);
  const Tensor p = m.flat_params(), g = m.flat_grads();
  auto host = [](const Tensor& t) { return to_host_f32(t); };
  auto fill_grads = [&](float value, bool poison) {
    std::vector<float> v(size_t(g.numel()), value);
    if (poison) v[v.size() / 2] = std::nanf("");
    copy_tensor(g, Tensor(v.data(), DType::F32, g.shape));
  };
  fill_grads(0.01f, false);
  ASSERT_TRUE(opt.micro_step());
  ASSERT_EQ(opt.step(), 1);
  const auto p1 = host(p), m1 = host(opt.exp_avg()), v1 = host(opt.exp_avg_sq());

  fill_grads(0.01f, true);
  EXPECT_TRUE(opt.micro_step());  // a step boundary, but nothing applied
  EXPECT_TRUE(guard.last_skipped());
  EXPECT_EQ(opt.step(), 1);
  EXPECT_EQ(host(p), p1);
  EXPECT_EQ(host(opt.exp_avg()), m1);
  EXPECT_EQ(host(opt.exp_avg_sq()), v1);
  for (float x : host(g)) ASSERT_EQ(x, 0.0f);  // the poisoned gradients are gone

  fill_grads(0.01f, false);
  EXPECT_TRUE(opt.micro_step());
  EXPECT_FALSE(guard.last_skipped());
  EXPECT_EQ(opt.step(), 2);
  EXPECT_NE(host(p), p1);
  EXPECT_EQ(guard.skipped(), 1);
  for (float x : host(p)) ASSERT_TRUE(std::isfinite(x));
}

// A learning rate far too large: step 1 is finite (and checkpointed), the forward of step 2
// overflows. The run stops naming step 2, checkpoint 1 stays latest, no final model is written.
TEST_F(NonfiniteModel, DivergingRunStopsAtTheStepAndKeepsThePreviousCheckpointLatest) {
  test::write_tiny_sft(tmp / "sft.json", 16);
  auto a = sft("diverge");
  a.learning_rate = 1e30;
  a.lr_warmup_ratio = 0.0;
  a.lr_scheduler_type = train::ScheduleKind::Constant;
  test::expect_error([&] { train::run_stage(a); },
                     {"train sft: step 2: ", "--nonfinite stop", "last finite values: ",
                      "(step 1)", "--nonfinite skip"});
  const std::string root = a.output_dir + "/checkpoints";
  EXPECT_EQ(fs::path(train::latest_checkpoint(root)).filename(), "step-00000001");
  EXPECT_FALSE(fs::exists(root + "/step-00000002"));
  EXPECT_FALSE(fs::exists(a.output_dir + "/beaver.json"));
  // What was written loads, and is finite.
  model::LlamaModel m = tiny_model(/*training=*/false);
  model::load_weights(m, train::latest_checkpoint(root) + "/model");

  // Under skip the same run drops steps, reports them, and ends once too many come in a row.
  auto b = sft("diverge-skip");
  b.learning_rate = 1e30;
  b.lr_warmup_ratio = 0.0;
  b.lr_scheduler_type = train::ScheduleKind::Constant;
  b.nonfinite = {train::NonfinitePolicy::Skip, 2};
  test::expect_error([&] { train::run_stage(b); },
                     {"step 2: ", "3 consecutive steps skipped", "--max_consecutive_skips 2"});
  const std::string metrics = read_text_file(b.output_dir + "/metrics.jsonl");
  EXPECT_NE(metrics.find("\"skipped_steps\":2"), std::string::npos) << metrics;
}

// A whole SFT run under --nonfinite skip: the gradients of micro-batch 4 are poisoned after its
// backward (a NaN gradient norm, as an overflow would give). That step is dropped with the
// weights, both moments and the step counter exactly as they were, the skip is counted in
// metrics.jsonl and the log, and every later step trains.
TEST_F(NonfiniteModel, SkipInAStageDropsThePoisonedStepAndTrainsOn) {
  test::write_tiny_sft(tmp / "sft.json", 12);
  auto a = sft("skip");
  a.epochs = 2;
  a.per_device_train_batch_size = 2;  // 6 micro-batches (= steps) per epoch, 12 in all
  a.learning_rate = 1e-3;
  a.save_interval = 0;
  a.log_interval = 1;
  a.nonfinite = {train::NonfinitePolicy::Skip, 1};
  constexpr int64_t kPoisoned = 4;
  std::vector<float> m_before, v_before;
  std::vector<int64_t> step_at(13, -1);
  std::vector<std::vector<float>> params_at(13);
  a.after_backward = [&](int64_t micro, model::LlamaModel& m, const train::Optimizer& opt) {
    step_at[size_t(micro)] = opt.step();
    params_at[size_t(micro)] = to_host_f32(m.flat_params());
    if (micro == kPoisoned) {
      m_before = to_host_f32(opt.exp_avg());
      v_before = to_host_f32(opt.exp_avg_sq());
      std::vector<float> g = to_host_f32(m.flat_grads());
      g[g.size() / 3] = std::nanf("");
      copy_tensor(m.flat_grads(), Tensor(g.data(), DType::F32, m.flat_grads().shape));
    } else if (micro == kPoisoned + 1) {
      // The step after the skip starts from exactly the state before it.
      EXPECT_EQ(to_host_f32(opt.exp_avg()), m_before);
      EXPECT_EQ(to_host_f32(opt.exp_avg_sq()), v_before);
    }
  };
  testing::internal::CaptureStderr();
  const train::StageResult res = train::run_stage(a);
  const std::string log = testing::internal::GetCapturedStderr();

  EXPECT_EQ(res.skipped_steps, 1);
  EXPECT_EQ(res.steps, 11);
  for (int64_t k = 1; k <= 12; ++k)
    EXPECT_EQ(step_at[size_t(k)], k <= kPoisoned ? k - 1 : k - 2) << "micro-batch " << k;
  EXPECT_EQ(params_at[kPoisoned + 1], params_at[kPoisoned]);   // weights kept across the skip
  EXPECT_NE(params_at[kPoisoned + 2], params_at[kPoisoned + 1]);  // the next step trained
  EXPECT_NE(params_at[12], params_at[kPoisoned + 2]);             // and so did the later ones
  EXPECT_TRUE(std::isfinite(res.last_loss));
  // metrics.jsonl: the skip's own record (after step 3), then the count on every later step.
  std::istringstream lines(read_text_file(a.output_dir + "/metrics.jsonl"));
  std::vector<nlohmann::json> skip_records, counted;
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("skipped_steps")) continue;
    EXPECT_EQ(j["skipped_steps"], 1) << line;
    (j.contains("loss") ? counted : skip_records).push_back(j);
  }
  ASSERT_EQ(skip_records.size(), 1u);
  EXPECT_EQ(skip_records[0]["step"], kPoisoned - 1);
  ASSERT_EQ(counted.size(), 8u);  // steps 4..11
  EXPECT_EQ(counted.front()["step"], kPoisoned);
  EXPECT_TRUE(counted.back()["loss"].is_number());
  // The log names the step, the quantity and the count; the run's summary repeats it (warnings,
  // shown unless BEAVER_LOG=error).
  if (log_enabled(LogLevel::Warn)) {
    // (A NaN prints as "nan" or "-nan", by its sign bit.)
    EXPECT_NE(log.find("train sft: step 4: grad_norm is "), std::string::npos) << log;
    EXPECT_NE(log.find("nan: step skipped (weights and optimizer state kept"), std::string::npos)
        << log;
    EXPECT_NE(log.find("1 skipped so far"), std::string::npos) << log;
    EXPECT_NE(log.find("1 optimizer steps skipped for non-finite values"), std::string::npos)
        << log;
  }
  // The final model is written, and finite (the loader refuses anything else).
  model::LlamaModel m = tiny_model(/*training=*/false);
  model::load_weights(m, a.output_dir);
}

// --resume never starts from a poisoned optimizer state: a NaN moment, or a negative second
// moment (sqrt of it is NaN), in optimizer.safetensors is refused naming the file and element.
TEST_F(NonfiniteModel, ResumeRefusesANonFiniteOrNegativeOptimizerMoment) {
  model::LlamaModel m = tiny_model();
  train::OptimizerConfig oc;
  oc.schedule.total_steps = 1;
  train::Optimizer opt(m, oc);
  opt.save(tmp / "opt");
  opt.load(tmp / "opt");  // what save wrote loads
  const int64_t n = opt.exp_avg().numel();
  auto rewrite = [&](float m3, float v5) {
    std::vector<float> mv(size_t(n), 0.0f), vv(size_t(n), 0.0f);
    mv[3] = m3;
    vv[5] = v5;
    write_safetensors(tmp / "opt/optimizer.safetensors",
                      {{"m", Tensor(mv.data(), DType::F32, Shape{n})},
                       {"v", Tensor(vv.data(), DType::F32, Shape{n})}},
                      {{"format", "beaver-optimizer"}});
  };
  rewrite(INFINITY, 0.0f);
  test::expect_error([&] { opt.load(tmp / "opt"); },
                     {"optimizer.safetensors", "moment m", "1 non-finite value", "element 3",
                      "refusing to resume"});
  rewrite(0.0f, -1.0f);
  test::expect_error([&] { opt.load(tmp / "opt"); },
                     {"optimizer.safetensors", "moment v holds -1 at element 5"});
  rewrite(0.5f, 0.25f);
  opt.load(tmp / "opt");
  EXPECT_EQ(to_host_f32(opt.exp_avg())[3], 0.5f);
}

TEST_F(NonfiniteModel, StartingModelWithANaNWeightIsRefused) {
  model::BeaverCheckpoint ck(tmp / "init");
  std::vector<model::TensorSource> src = ck.sources();
  for (auto& s : src)
    if (s.name == "model.layers.0.mlp.down_proj.weight") {
      auto fill = s.fill;
      s.fill = [fill](DType d, std::span<uint8_t> out) {
        fill(d, out);
        const float nan = std::nanf("");
        std::memcpy(out.data() + 4 * 7, &nan, 4);
      };
    }
  model::write_beaver_checkpoint(tmp / "nan", ck.config(), ck.kind(), DType::F32, src,
                                 tmp / "init", /*allow_nonfinite=*/true);
  test::write_tiny_sft(tmp / "sft.json", 8);
  auto a = sft("from-nan");
  a.model_name_or_path = tmp / "nan";
  test::expect_error([&] { train::run_stage(a); },
                     {"model.layers.0.mlp.down_proj.weight", "1 non-finite value",
                      "element 7", "refusing to start"});
  EXPECT_FALSE(fs::exists(a.output_dir + "/checkpoints"));
}

TEST_F(NonfiniteModel, CheckpointsCannotBeWrittenWithNonFiniteValues) {
  model::BeaverCheckpoint ck(tmp / "init");
  std::vector<model::TensorSource> src = ck.sources();
  for (auto& s : src)
    if (s.name == "model.norm.weight")
      s.fill = [](DType, std::span<uint8_t> out) {
        std::vector<float> v(out.size() / 4, 1.0f);
        v.back() = INFINITY;
        std::memcpy(out.data(), v.data(), out.size());
      };
  test::expect_error(
      [&] { model::write_beaver_checkpoint(tmp / "bad", ck.config(), ck.kind(), DType::F32, src); },
      {"model.norm.weight", "1 non-finite value", "refusing to write"});
  EXPECT_FALSE(fs::exists(tmp / "bad/beaver.json"));
  EXPECT_FALSE(fs::exists(tmp / "bad/model.safetensors"));
  test::expect_error(
      [&] {
        model::write_hf_checkpoint(tmp / "bad-hf", ck.config(), ck.kind(), DType::F32, src, 0, "");
      },
      {"model.norm.weight", "refusing to write"});
  EXPECT_FALSE(fs::exists(tmp / "bad-hf/config.json"));
  // A finite f32 value beyond f16's range becomes an infinity on the way: refused as well.
  std::vector<model::TensorSource> big = ck.sources();
  for (auto& s : big)
    if (s.name == "model.norm.weight")
      s.fill = [](DType d, std::span<uint8_t> out) {
        const std::vector<float> v(out.size() / dtype_size(d), 1e6f);
        SafeTensorInfo info;
        info.name = "x";
        info.dtype = DType::F32;
        info.dtype_name = "F32";
        info.shape = {int64_t(v.size())};
        info.end = v.size() * 4;
        info.data = reinterpret_cast<const uint8_t*>(v.data());
        model::convert_float_bytes(info, d, out);
      };
  test::expect_error(
      [&] { model::write_beaver_checkpoint(tmp / "f16", ck.config(), ck.kind(), DType::F16, big); },
      {"model.norm.weight", "non-finite"});

  // The optimizer state: a NaN moment is refused before anything is written.
  model::LlamaModel m = tiny_model();
  train::OptimizerConfig oc;
  oc.schedule.total_steps = 1;
  train::Optimizer opt(m, oc);
  opt.save(tmp / "opt-ok");
  std::vector<float> v(size_t(opt.exp_avg_sq().numel()), 0.0f);
  v[3] = std::nanf("");
  copy_tensor(opt.exp_avg_sq(), Tensor(v.data(), DType::F32, opt.exp_avg_sq().shape));
  test::expect_error([&] { opt.save(tmp / "opt-bad"); },
                     {"opt-bad", "moment v", "1 non-finite value", "refusing to write"});
  EXPECT_FALSE(fs::exists(tmp / "opt-bad/optimizer.safetensors"));
}

}  // namespace
}  // namespace beaver
