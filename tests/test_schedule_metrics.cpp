// LR schedules against hand-computed values, and the metrics log format.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "csrc/error.h"
#include "train/metrics.h"
#include "train/schedule.h"

namespace beaver::train {
namespace {

TEST(Schedule, CosineWithWarmup) {
  Schedule s{ScheduleKind::Cosine, 1e-3, 0.1, 100};
  EXPECT_EQ(s.warmup_steps(), 10);
  EXPECT_DOUBLE_EQ(s.lr(0), 0.0);
  EXPECT_DOUBLE_EQ(s.lr(5), 0.5e-3);
  EXPECT_DOUBLE_EQ(s.lr(10), 1e-3);
  EXPECT_NEAR(s.lr(55), 0.5e-3, 1e-15);  // halfway through the decay
  EXPECT_NEAR(s.lr(100), 0.0, 1e-15);
  EXPECT_NEAR(s.multiplier(32), 0.5 * (1 + std::cos(M_PI * 22.0 / 90.0)), 1e-15);
}

TEST(Schedule, LinearAndConstant) {
  Schedule lin{ScheduleKind::Linear, 2.0, 0.0, 4};
  EXPECT_DOUBLE_EQ(lin.lr(0), 2.0);
  EXPECT_DOUBLE_EQ(lin.lr(1), 1.5);
  EXPECT_DOUBLE_EQ(lin.lr(4), 0.0);
  // HF's constant schedule ignores the warmup ratio: full rate from the first step.
  Schedule c{ScheduleKind::Constant, 5e-6, 0.03, 1000};
  EXPECT_EQ(c.warmup_steps(), 0);
  EXPECT_DOUBLE_EQ(c.lr(0), 5e-6);
  EXPECT_DOUBLE_EQ(c.lr(999), 5e-6);
  Schedule cw{ScheduleKind::ConstantWithWarmup, 5e-6, 0.03, 1000};
  EXPECT_EQ(cw.warmup_steps(), 30);
  EXPECT_DOUBLE_EQ(cw.lr(0), 0.0);
  EXPECT_DOUBLE_EQ(cw.lr(15), 2.5e-6);
  EXPECT_DOUBLE_EQ(cw.lr(999), 5e-6);
  EXPECT_EQ(parse_schedule("constant_with_warmup"), ScheduleKind::ConstantWithWarmup);
  EXPECT_EQ(parse_schedule("cosine"), ScheduleKind::Cosine);
  EXPECT_THROW(parse_schedule("step"), Error);
  Schedule bad{ScheduleKind::Cosine, 1.0, 0.0, 0};
  EXPECT_THROW(bad.lr(0), Error);
}

TEST(Metrics, WritesJsonlAndProgress) {
  const auto path = std::filesystem::temp_directory_path() / "beaver_metrics_log.jsonl";
  std::filesystem::remove(path);
  {
    MetricsLog log(path.string(), 10);
    log.record(1, {{"loss", 0.5}, {"acc", NAN}});
    log.record(2, {{"loss", 0.25}});
    const std::string line = log.progress_line(2, {{"loss", 0.25}}, 1234.0);
    EXPECT_NE(line.find("step 2/10 | loss 0.25 | 1234 tok/s | ETA"), std::string::npos) << line;
  }
  std::ifstream f(path);
  std::string l1, l2;
  std::getline(f, l1);
  std::getline(f, l2);
  const auto j1 = nlohmann::json::parse(l1), j2 = nlohmann::json::parse(l2);
  EXPECT_EQ(j1["step"], 1);
  EXPECT_TRUE(j1["acc"].is_null());
  EXPECT_EQ(j2["loss"], 0.25);
  EXPECT_EQ(format_duration(65), "1m05s");
  EXPECT_EQ(format_duration(3725), "1h02m");
  EXPECT_THROW(MetricsLog("/nonexistent/dir/m.jsonl"), Error);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace beaver::train
