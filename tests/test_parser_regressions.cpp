// Inputs the fuzz targets (tools/fuzz) found to escape as something other than a named
// beaver::Error, each kept here so it stays refused cleanly: a mistyped magic in the files
// `--resume` reads, a number beyond the double range in a data record, and a `latest` pointer
// naming a file the file system cannot look up, and a shard index naming such a file.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "csrc/atomic_file.h"
#include "format_fixtures.h"
#include "model/checkpoint.h"
#include "train/checkpoint_dir.h"
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

}  // namespace
}  // namespace beaver
