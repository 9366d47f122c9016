// Inputs the fuzz targets (tools/fuzz) found to escape as something other than a named
// beaver::Error, each kept here so it stays refused cleanly: a mistyped magic in the files
// `--resume` reads, a number beyond the double range in a data record, and a `latest` pointer
// naming a file the file system cannot look up, and a shard index naming such a file; and the
// seeds of fuzz_resume, which must parse for the target to start past the magic.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "csrc/atomic_file.h"
#include "format_fixtures.h"
#include "model/checkpoint.h"
#include "train/checkpoint_dir.h"
#include "train/optimizer.h"
#include "train/rlhf.h"
#include "train/data.h"
#include "train/trainer_state.h"

namespace beaver {
namespace {

namespace fs = std::filesystem;

TEST(ParserRegressions, TrainerStateWithAMistypedMagicOrVersionIsRefused) {
  train::TrainerProgress want;
  want.stage = "sft";
  test::expect_error(
      [&] { train::parse_trainer_state(R"({"magic": -1, "index": 8})", "ts.json", want); },
      {"ts.json", "magic"});
  test::expect_error(
      [&] {
        train::parse_trainer_state(R"({"magic": "beaver-trainer-state", "format_version": "1"})",
                                   "ts.json", want);
      },
      {"ts.json", "format_version"});
  // And the record the writer produces reads back.
  want.epoch = 2;
  want.index = 5;
  want.run_config = {{"lr", 1e-3}};
  const auto p =
      train::parse_trainer_state(train::trainer_state_json(want).dump(), "ts.json", want);
  EXPECT_EQ(p.epoch, 2);
  EXPECT_EQ(p.index, 5);
}

TEST(ParserRegressions, DataRecordWithANumberBeyondDoubleRangeIsAMalformedRecord) {
  test::TempDir tmp;
  const std::string path = tmp / "sft.jsonl";
  write_text_file(path,
                  "{\"instruction\": \"a\", \"output\": \"b\"}\n"
                  "{\"instruction\": \"c\", \"output\": \"d\", \"x\": 0388e13981572612242}\n");
  test::expect_error([&] { train::read_alpaca(path); }, {"sft.jsonl:2", "bad JSON"});
  train::ReadOptions skip;
  skip.policy = train::BadRecordPolicy::Skip;
  train::ReadReport rep;
  EXPECT_EQ(train::read_alpaca(path, skip, &rep).size(), 1u);
  EXPECT_EQ(rep.skipped, 1u);
}

TEST(ParserRegressions, LatestNamingAnUnlookableFileIsRefused) {
  test::TempDir tmp;
  fs::create_directories(tmp / "run");
  write_text_file(tmp / "run/latest", std::string(300, 'x') + "\n");
  test::expect_error([&] { train::latest_checkpoint(tmp / "run"); }, {"latest", "does not exist"});
}

TEST(ParserRegressions, IndexNamingAShardTooLongToLookUpIsRefused) {
  test::TempDir tmp;
  const char* src = std::getenv("BEAVER_SOURCE_DIR");
  const fs::path golden = (src ? fs::path(src) / "tests" : fs::path(__FILE__).parent_path()) /
                          "data/golden/gqa_sharded";
  fs::copy_file(golden / "config.json", tmp / "config.json");
  write_text_file(tmp / "model.safetensors.index.json",
                  R"({"weight_map": {"model.norm.weight": ")" + std::string(300, 'W') + "\"}}");
  test::expect_error([&] { model::HfCheckpoint ck(tmp.str()); }, {"shard", "is missing"});
}

// The real files that seed fuzz_resume (written by a tiny SFT and PPO-Lag run) parse with the
// expectations the target gives them, so its corpus starts past the magic; the parsers refuse
// what a resume must not accept, naming the field.
TEST(ParserRegressions, ResumeMetadataSeedsParseAndBadFieldsAreNamed) {
  const char* src = std::getenv("BEAVER_SOURCE_DIR");
  const fs::path dir = (src ? fs::path(src) / "tests" : fs::path(__FILE__).parent_path()) /
                       "data/fuzz/resume";
  auto text = [&](const char* name) { return read_text_file((dir / name).string()).substr(1); };
  const auto o = train::parse_optimizer_state(text("optimizer_actor.json"), "o.json", 33696);
  EXPECT_EQ(o.step, 2);
  EXPECT_EQ(o.shards, 1);
  EXPECT_EQ(train::parse_optimizer_state(text("optimizer_sharded.json"), "o.json", 33696).shards,
            2);
  test::expect_error(
      [&] { train::parse_optimizer_state(text("optimizer_sft.json"), "o.json", 33697); },
      {"o.json", "33696 parameters, the model has 33697"});
  test::expect_error(
      [&] {
        train::parse_optimizer_state(
            R"({"magic": "beaver-optimizer", "format_version": 1, "step": -3, "numel": 1})",
            "o.json", 1);
      },
      {"o.json", "\"step\"", "-3"});

  const nlohmann::json want = {{"algorithm", "ppo-lag"}, {"max_length", 128}};
  train::LagrangeMultiplier::Options lag;
  const auto r = train::parse_rlhf_state(text("rlhf_ppo_lag.json"), "r.json", want, lag);
  EXPECT_EQ(r.global_step, 2);
  EXPECT_EQ(r.lagrange.window.size(), 4u);
  EXPECT_TRUE(std::isfinite(r.lagrange.log_lambda));
  train::parse_rlhf_state(text("rlhf_ppo.json"), "r.json", nlohmann::json::object(), lag);
  test::expect_error(
      [&] { train::parse_rlhf_state(text("rlhf_ppo.json"), "r.json", want, lag); },
      {"r.json", "algorithm", "\"ppo\"", "resume with the same settings"});
  lag.window_size = 2;
  test::expect_error(
      [&] { train::parse_rlhf_state(text("rlhf_ppo_lag.json"), "r.json", want, lag); },
      {"r.json", "\"lagrange\"", "4 episode costs exceed the window size 2"});
  EXPECT_EQ(train::parse_rlhf_state(text("rlhf_small_window.json"), "r.json", want, lag)
                .lagrange.window.size(),
            2u);
  // Written back, a parsed record reads the same.
  lag.window_size = 128;
  const auto again =
      train::parse_rlhf_state(train::rlhf_state_json(r, want).dump(), "r2", want, lag);
  EXPECT_EQ(again.lagrange.window, r.lagrange.window);
  EXPECT_EQ(again.index, r.index);
}

}  // namespace
}  // namespace beaver
