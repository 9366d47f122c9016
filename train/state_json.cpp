// The checkpoint records' common reading (state_json.h).
#include "train/state_json.h"

#include "csrc/error.h"

namespace beaver::train {

nlohmann::json parse_state_json(const std::string& text, const std::string& where,
                                std::string_view magic, int version, std::string_view what) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    BEAVER_FAIL(where, ": not valid JSON (", e.what(), ")");
  }
  // Compared as JSON values, so a field of another type is refused by name, never thrown as a
  // JSON type error.
  BEAVER_CHECK(j.is_object() && j.contains("magic") && j["magic"] == std::string(magic), where,
               ": not a Beaver ", what, " (magic)");
  BEAVER_CHECK(j.contains("format_version") && j["format_version"] == version, where,
               ": unsupported format_version ", j["format_version"].dump());
  return j;
}

void check_run_config(const nlohmann::json& stored, const nlohmann::json& expected,
                      const std::string& where, bool exact) {
  if (stored == expected) return;
  for (const auto& [k, v] : expected.items()) {
    const bool have = stored.is_object() && stored.contains(k);
    BEAVER_CHECK(have && stored[k] == v, where, ": the run was started with ", k, " = ",
                 have ? stored[k].dump() : std::string("(absent)"), ", this run has ", v.dump(),
                 "; resume with the same settings");
  }
  BEAVER_CHECK(!exact, where, ": the stored run configuration differs from this run's");
}

}  // namespace beaver::train
