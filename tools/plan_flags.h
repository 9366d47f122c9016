// --dry_run and --device_memory, shared by every `beaver train` subcommand and `beaver plan`
// (train/memory_plan.h says what the plan holds). Every train subcommand calls check() before
// it allocates anything: the plan is printed under --dry_run (and the run stops there), and a
// run that does not fit is refused with the largest item and the flags that would fit.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "train/memory_plan.h"

namespace beaver::tools {

struct PlanFlags {
  bool dry_run = false;
  std::string device_memory;  // empty: the detected size

  void add(CLI::App& cmd, bool with_dry_run = true);
  // --device_memory in bytes (0: not given, the detected size).
  size_t device_bytes() const { return device_memory.empty() ? 0 : train::parse_bytes(device_memory); }
  // Plans `setup` (device memory from the flag); prints the table under --dry_run (on the
  // root rank) and returns true: the caller stops. Otherwise throws when the run does not fit
  // (batch_flag / recompute_flag name the flags the suggestions may change; "" = none) and
  // returns false.
  bool check(train::PlanSetup setup, const std::string& batch_flag,
             const std::string& recompute_flag, bool root) const;
};

}  // namespace beaver::tools
