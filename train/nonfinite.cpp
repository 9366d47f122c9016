// Non-finite guard of the optimizer steps (nonfinite.h).
#include "train/nonfinite.h"

#include <cmath>

#include "csrc/error.h"
#include "csrc/log.h"

namespace beaver::train {

NonfinitePolicy parse_nonfinite_policy(std::string_view s) {
  if (s == "stop") return NonfinitePolicy::Stop;
  if (s == "skip") return NonfinitePolicy::Skip;
  BEAVER_FAIL("--nonfinite: expected 'stop' or 'skip', got '", s, "'");
}

std::string_view nonfinite_policy_name(NonfinitePolicy p) {
  return p == NonfinitePolicy::Stop ? "stop" : "skip";
}

NonfiniteGuard::NonfiniteGuard(std::string who, const NonfiniteOptions& opt)
    : who_(std::move(who)), opt_(opt) {
  BEAVER_CHECK(opt.max_consecutive_skips >= 1, "--max_consecutive_skips must be >= 1, got ",
               opt.max_consecutive_skips);
}

void NonfiniteGuard::observe(std::string_view name, double value) {
  pending_.emplace_back(std::string(name), value);
}

std::string NonfiniteGuard::last_finite() const {
  if (finite_.empty()) return "none (the first step)";
  std::string r;
  for (const auto& [name, vs] : finite_)
    r += cat(r.empty() ? "" : ", ", name, " ", vs.first, " (step ", vs.second + 1, ")");
  return r;
}

bool NonfiniteGuard::admit(int64_t step, double grad_norm) {
  pending_.emplace_back("grad_norm", grad_norm);
  std::vector<std::pair<std::string, double>> values;
  values.swap(pending_);
  const std::pair<std::string, double>* bad = nullptr;
  for (const auto& v : values)
    if (!std::isfinite(v.second)) {
      bad = &v;
      break;
    }
  if (!bad) {
    for (const auto& [name, x] : values) finite_[name] = {x, step};
    consecutive_ = 0;
    last_skipped_ = false;
    return true;
  }
  // Steps are reported 1-based, as in the progress lines and metrics.jsonl.
  const std::string what = cat(who_, ": step ", step + 1, ": ", bad->first, " is ", bad->second);
  BEAVER_CHECK(opt_.policy == NonfinitePolicy::Skip, what,
               " (--nonfinite stop); last finite values: ", last_finite(),
               ". The step was not applied and the newest checkpoint stays latest; lower the "
               "learning rate, or pass --nonfinite skip to drop such steps");
  ++skipped_;
  ++consecutive_;
  last_skipped_ = true;
  BEAVER_CHECK(consecutive_ <= opt_.max_consecutive_skips, what, ": ", consecutive_,
               " consecutive steps skipped (--max_consecutive_skips ",
               opt_.max_consecutive_skips, "); last finite values: ", last_finite(),
               ". The newest checkpoint stays latest");
  log_warn(what, ": step skipped (weights and optimizer state kept; ", skipped_,
           " skipped so far, ", consecutive_, " in a row)");
  return false;
}

}  // namespace beaver::train
