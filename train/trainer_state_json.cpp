// trainer_state.json: the progress record of a whole-run checkpoint (trainer_state.h), written
// and parsed here apart from the model and optimizer files so that the parser stands alone.
#include "csrc/error.h"
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
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    BEAVER_FAIL(where, ": not valid JSON (", e.what(), ")");
  }
  // Compared as JSON values: a magic or version of another type is refused, not thrown as a
  // type error.
  BEAVER_CHECK(j.is_object() && j.contains("magic") && j["magic"] == kMagic, where,
               ": not a Beaver trainer state (magic)");
  BEAVER_CHECK(j.contains("format_version") && j["format_version"] == kVersion, where,
               ": unsupported format_version");
  const auto stage = field<std::string>(j, "stage", where);
  BEAVER_CHECK(stage == expected.stage, where, ": the checkpoint is of stage '", stage,
               "', this run is '", expected.stage, "'");
  const nlohmann::json stored_cfg = j.contains("run_config") ? j["run_config"] : nlohmann::json();
  if (stored_cfg != expected.run_config) {
    for (const auto& [k, v] : expected.run_config.items()) {
      const auto it = stored_cfg.find(k);
      BEAVER_CHECK(it != stored_cfg.end() && *it == v, where, ": the run was started with ", k,
                   " = ", it == stored_cfg.end() ? std::string("(absent)") : it->dump(),
                   ", this run has ", v.dump(), "; resume with the same settings");
    }
    BEAVER_FAIL(where, ": the stored run configuration differs from this run's");
  }
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
