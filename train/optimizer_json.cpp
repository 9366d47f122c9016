// optimizer.json: the record Optimizer::save writes beside the moments (optimizer.h), written
// and parsed here apart from the model and the tensors so that the parser stands alone (it is
// fuzzed by tools/fuzz/fuzz_resume.cpp).
#include <cstdint>
#include <limits>

#include "csrc/error.h"
#include "train/state_json.h"
#include "train/optimizer.h"

namespace beaver::train {

namespace {
constexpr const char* kStateMagic = "beaver-optimizer";
constexpr int kStateVersion = 1;
constexpr int64_t kMaxShards = 65536;
}  // namespace

nlohmann::ordered_json optimizer_state_json(const OptimizerStateRecord& r,
                                            const OptimizerConfig& cfg) {
  nlohmann::ordered_json j;
  j["magic"] = kStateMagic;
  j["format_version"] = kStateVersion;
  j["step"] = r.step;
  j["numel"] = r.numel;
  if (r.shards > 1) j["shards"] = r.shards;
  j["lr"] = cfg.schedule.base_lr;
  j["schedule_total_steps"] = cfg.schedule.total_steps;
  j["weight_decay"] = cfg.weight_decay;
  j["beta1"] = cfg.beta1;
  j["beta2"] = cfg.beta2;
  j["eps"] = cfg.eps;
  j["max_grad_norm"] = cfg.max_grad_norm;
  j["accumulation"] = cfg.accumulation;
  return j;
}

OptimizerStateRecord parse_optimizer_state(const std::string& text, const std::string& where,
                                           int64_t numel) {
  nlohmann::json j =
      parse_state_json(text, where, kStateMagic, kStateVersion, "optimizer state");
  auto integer = [&](const char* name, int64_t lo, int64_t hi) {
    const nlohmann::json& v = j[name];
    BEAVER_CHECK(v.is_number_integer(), where, ": field \"", name, "\" must be an integer, got ",
                 v.dump());
    // An unsigned value past int64 reads as negative and is refused with the rest.
    const int64_t x = v.get<int64_t>();
    BEAVER_CHECK(x >= lo && x <= hi, where, ": field \"", name, "\" must be in [", lo, ", ", hi,
                 "], got ", v.dump());
    return x;
  };
  OptimizerStateRecord r;
  r.step = integer("step", 0, std::numeric_limits<int64_t>::max());
  BEAVER_CHECK(j.contains("numel") && j["numel"].is_number_integer() && j["numel"] == numel,
               where, ": state for ", j["numel"].dump(), " parameters, the model has ", numel);
  r.numel = numel;
  r.shards = j.contains("shards") ? int(integer("shards", 1, kMaxShards)) : 1;
  return r;
}

}  // namespace beaver::train
