// trainer_state.json: the progress record of a whole-run checkpoint (trainer_state.h), written
// and parsed here apart from the model and optimizer files so that the parser stands alone.
#include "csrc/error.h"
#include "train/state_json.h"
#include "train/trainer_state.h"

namespace beaver::train {

namespace {
constexpr const char* kMagic = "beaver-trainer-state";
constexpr int kVersion = 1;

template <typename T>
T field(const nlohmann::json& j, const char* name, const std::string& where) {
  BEAVER_CHECK(j.contains(name), where, ": missing field \"", name, "\"");
  try {
    return j.at(name).get<T>();
  } catch (const nlohmann::json::exception&) {
    BEAVER_FAIL(where, ": field \"", name, "\" has the wrong type");
  }
}
}  // namespace

nlohmann::json trainer_state_json(const TrainerProgress& p) {
  nlohmann::ordered_json j;
  j["magic"] = kMagic;
  j["format_version"] = kVersion;
  j["stage"] = p.stage;
  j["epoch"] = p.epoch;
  j["index"] = p.index;
  j["micro_batches"] = p.micro_batches;
  j["seed"] = p.seed;
  j["rng_position"] = p.rng_position;
  j["metrics_lines"] = p.metrics_lines;
  j["run_config"] = p.run_config;
  return j;
}

TrainerProgress parse_trainer_state(const std::string& text, const std::string& where,
                                    const TrainerProgress& expected) {
  nlohmann::json j = parse_state_json(text, where, kMagic, kVersion, "trainer state");
  const auto stage = field<std::string>(j, "stage", where);
  BEAVER_CHECK(stage == expected.stage, where, ": the checkpoint is of stage '", stage,
               "', this run is '", expected.stage, "'");
  const nlohmann::json stored_cfg = j.contains("run_config") ? j["run_config"] : nlohmann::json();
  check_run_config(stored_cfg, expected.run_config, where, true);
  TrainerProgress p = expected;
  p.epoch = field<int64_t>(j, "epoch", where);
  p.index = field<int64_t>(j, "index", where);
  p.micro_batches = field<int64_t>(j, "micro_batches", where);
  p.seed = field<uint64_t>(j, "seed", where);
  p.rng_position = field<uint64_t>(j, "rng_position", where);
  p.metrics_lines = field<int64_t>(j, "metrics_lines", where);
  BEAVER_CHECK(p.epoch >= 0 && p.index >= 0 && p.micro_batches >= 0 && p.metrics_lines >= 0,
               where, ": negative counters");
  return p;
}

}  // namespace beaver::train
