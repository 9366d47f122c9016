// --nonfinite and --max_consecutive_skips, shared by `beaver train` and `beaver rlhf`
// (train/nonfinite.h says what they do).
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "csrc/error.h"
#include "train/nonfinite.h"

namespace beaver::tools {

// Registers both flags on `cmd`; call resolve() in the callback to get the options.
struct NonfiniteFlags {
  std::string policy = "stop";
  train::NonfiniteOptions opts;

  void add(CLI::App& cmd) {
    cmd.add_option("--nonfinite", policy,
                   "A NaN or infinity in a loss, gradient norm, reward, cost, advantage or "
                   "lambda: stop (error naming the step) | skip (drop that step, count it)")
        ->capture_default_str();
    cmd.add_option("--max_consecutive_skips", opts.max_consecutive_skips,
                   "Under --nonfinite skip: stop after this many skipped steps in a row")
        ->capture_default_str();
  }
  train::NonfiniteOptions resolve() const {
    train::NonfiniteOptions o = opts;
    o.policy = train::parse_nonfinite_policy(policy);
    BEAVER_CHECK(o.max_consecutive_skips >= 1, "--max_consecutive_skips must be >= 1, got ",
                 o.max_consecutive_skips);
    return o;
  }
};

}  // namespace beaver::tools
