#pragma once
// What the three checkpoint records (trainer_state.json, rlhf_state.json, optimizer.json) read
// alike: the text parsed as JSON, the record's magic and format version, and the run settings
// stored at the start of a run compared with the resuming run's. Each refusal names the file
// (`where`) and the field; none throws a JSON type error.
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace beaver::train {

// `text` parsed, checked to be an object with "magic" == magic and "format_version" ==
// version; `what` names the record in the refusal ("trainer state", ...).
nlohmann::json parse_state_json(const std::string& text, const std::string& where,
                                std::string_view magic, int version, std::string_view what);

// Refuses a stored run configuration that differs from `expected` in any of expected's keys,
// naming the first such key and both values; with `exact`, also one that holds other keys.
void check_run_config(const nlohmann::json& stored, const nlohmann::json& expected,
                      const std::string& where, bool exact);

}  // namespace beaver::train
