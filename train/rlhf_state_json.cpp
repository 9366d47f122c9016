// rlhf_state.json: the progress record of an RL checkpoint (rlhf.h), written and parsed here
// apart from the models and the optimisers so that the parser stands alone (it is fuzzed by
// tools/fuzz/fuzz_resume.cpp).
#include <algorithm>
#include <cmath>

#include "csrc/error.h"
#include "train/state_json.h"
#include "train/rlhf.h"

namespace beaver::train {

namespace {
constexpr const char* kMagic = "beaver-rlhf-state";
constexpr int kVersion = 1;
constexpr const char* kPrompts = "per_device_prompt_batch_size";
constexpr const char* kTrain = "per_device_train_batch_size";

// The run configuration without the rank count in it: the per-device prompt batch and
// micro-batch of `ranks` ranks become the global prompt batch and global micro-batch the RL
// step computes with (rlhf.h: global micro-batch m is the ranks' m-th micro-batches side by
// side). Values outside [1, 2^40] stay as they are (the comparison then takes them literally).
nlohmann::json rank_free(nlohmann::json c, int64_t ranks) {
  auto ok = [&](const char* k) {
    return c.contains(k) && c[k].is_number_integer() && c[k].get<int64_t>() >= 1 &&
           c[k].get<int64_t>() <= (int64_t(1) << 40);
  };
  if (!c.is_object() || !ok(kPrompts) || !ok(kTrain)) return c;
  const int64_t p = c[kPrompts].get<int64_t>(), t = c[kTrain].get<int64_t>();
  c.erase(kPrompts);
  c.erase(kTrain);
  c["global_prompt_batch_size (per_device_prompt_batch_size x ranks)"] = p * ranks;
  c["global_micro_batch_size (min(per_device_train_batch_size, per_device_prompt_batch_size) "
    "x ranks)"] = std::min(p, t) * ranks;
  return c;
}
}  // namespace

const std::vector<std::pair<std::string, nlohmann::json>>& rlhf_optional_run_config() {
  static const std::vector<std::pair<std::string, nlohmann::json>> keys = {
      {"lambda_kp", 0.0}, {"lambda_kd", 0.0}, {"cost_unit", "score"}};
  return keys;
}

nlohmann::ordered_json rlhf_state_json(const RlhfProgress& p,
                                       const nlohmann::json& run_config) {
  nlohmann::ordered_json j;
  j["magic"] = kMagic;
  j["format_version"] = kVersion;
  j["global_step"] = p.global_step;
  j["epoch"] = p.epoch;
  j["index"] = p.index;
  j["sequences_sampled"] = p.sequences_sampled;
  j["ptx_cycle"] = p.ptx_cycle;
  j["ptx_position"] = p.ptx_position;
  j["lambda_steps"] = p.lambda_steps;
  j["metrics_lines"] = p.metrics_lines;
  nlohmann::ordered_json lag;
  lag["log_lambda"] = p.lagrange.log_lambda;
  lag["episode_costs"] = p.lagrange.window;
  lag["pid_term"] = p.lagrange.pid_term;
  lag["previous_episode_cost"] = std::isfinite(p.lagrange.previous_episode_cost)
                                     ? nlohmann::ordered_json(p.lagrange.previous_episode_cost)
                                     : nlohmann::ordered_json();
  j["lagrange"] = lag;
  j["threshold"] = p.threshold;
  j["cost_scale"] = p.cost_scale;
  if (p.ranks > 0) j["ranks"] = p.ranks;
  j["run_config"] = run_config;
  return j;
}

RlhfProgress parse_rlhf_state(const std::string& text, const std::string& where,
                              const nlohmann::json& run_config,
                              const LagrangeMultiplier::Options& lagrange, int ranks) {
  nlohmann::json j = parse_state_json(text, where, kMagic, kVersion, "RLHF state");
  const nlohmann::json have = j.contains("run_config") ? j["run_config"] : nlohmann::json();
  BEAVER_CHECK(have.is_object(), where, ": field \"run_config\" must be an object");
  int stored_ranks = ranks;
  if (j.contains("ranks")) {
    const nlohmann::json& v = j["ranks"];
    BEAVER_CHECK(v.is_number_integer() && v.get<int64_t>() >= 1 && v.get<int64_t>() <= (1 << 20),
                 where, ": field \"ranks\" must be an integer in [1, 2^20], got ", v.dump());
    stored_ranks = int(v.get<int64_t>());
  }
  // Keys left out at their default: compared with the default filled in on both sides.
  nlohmann::json stored = have, expected = run_config;
  for (const auto& [k, v] : rlhf_optional_run_config()) {
    if (!stored.contains(k)) stored[k] = v;
    if (expected.is_object() && !expected.contains(k)) expected[k] = v;
  }
  check_run_config(rank_free(stored, stored_ranks), rank_free(expected, ranks), where, false);
  auto integer = [&](const char* name) {
    const nlohmann::json& v = j[name];
    // An unsigned value past int64 reads as negative and is refused with the rest.
    BEAVER_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0, where, ": field \"", name,
                 "\" must be a non-negative integer, got ", v.dump());
    return v.get<int64_t>();
  };
  RlhfProgress p;
  p.global_step = integer("global_step");
  p.epoch = integer("epoch");
  p.index = integer("index");
  p.sequences_sampled = uint64_t(integer("sequences_sampled"));
  p.ptx_cycle = uint64_t(integer("ptx_cycle"));
  p.ptx_position = integer("ptx_position");
  p.lambda_steps = integer("lambda_steps");
  p.metrics_lines = integer("metrics_lines");
  BEAVER_CHECK(j.contains("lagrange"), where, ": missing field \"lagrange\"");
  try {
    LagrangeMultiplier probe(lagrange);  // restores all or nothing, checking every value
    probe.restore_json(j["lagrange"].dump());
    p.lagrange = probe.state();
  } catch (const Error& e) {
    BEAVER_FAIL(where, ": field \"lagrange\": ", e.what());
  }
  // The threshold in force (a resolved requirement is not measured again on resume).
  BEAVER_CHECK(j["threshold"].is_number() && std::isfinite(j["threshold"].get<double>()), where,
               ": field \"threshold\" must be a finite number, got ", j["threshold"].dump());
  p.threshold = j["threshold"].get<double>();
  // The constrained cost's scale (--cost_unit); a file older than the field holds score-unit
  // runs, whose scale is 1.
  if (j.contains("cost_scale")) {
    const nlohmann::json& v = j["cost_scale"];
    BEAVER_CHECK(v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() > 0, where,
                 ": field \"cost_scale\" must be a finite number > 0, got ", v.dump());
    p.cost_scale = v.get<double>();
  }
  p.ranks = stored_ranks;
  return p;
}

}  // namespace beaver::train
