// The non-finite guard of one optimizer: every quantity that feeds an optimizer step (losses,
// rewards, costs, advantages, λ, and the gradient norm the step computes anyway) is checked
// before the step is applied, so a NaN or an infinity is caught at the step where it first
// appears and never reaches the weights or the AdamW moments.
//
//   --nonfinite stop (default)  the step throws beaver::Error naming the trainer, the step, the
//                               quantity and the last finite value of every watched quantity;
//                               nothing of that step is applied and no checkpoint is written,
//                               so the newest checkpoint stays `latest`.
//   --nonfinite skip            the step is dropped: gradients are cleared, weights, moments
//                               and the step counter stay as they were; the skip is logged and
//                               counted (skipped_steps in metrics.jsonl). More than
//                               --max_consecutive_skips skips in a row stop the run as above.
//
// Usage: observe() each quantity of the micro-batches that make up a step; the optimizer calls
// admit() with the gradient norm before it applies the update (train/optimizer.h).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace beaver::train {

enum class NonfinitePolicy { Stop, Skip };
// "stop" | "skip"; anything else is an Error naming the value.
NonfinitePolicy parse_nonfinite_policy(std::string_view s);
std::string_view nonfinite_policy_name(NonfinitePolicy p);

struct NonfiniteOptions {
  NonfinitePolicy policy = NonfinitePolicy::Stop;
  int64_t max_consecutive_skips = 10;  // under skip: more in a row stop the run (>= 1)
};

class NonfiniteGuard {
 public:
  // `who` names the trainer in messages ("train sft", "ppo-lag actor", ...).
  NonfiniteGuard(std::string who, const NonfiniteOptions& opt);

  const NonfiniteOptions& options() const { return opt_; }

  // Records a quantity that enters the coming step (several per step are fine).
  void observe(std::string_view name, double value);

  // Decides the step `step` (0-based optimizer step about to be taken) given its gradient
  // norm: true to apply it. Under stop a non-finite quantity throws; under skip it returns
  // false, or throws once the consecutive skips exceed the limit. Clears the observations.
  bool admit(int64_t step, double grad_norm);

  int64_t skipped() const { return skipped_; }          // steps dropped in this run
  int64_t consecutive() const { return consecutive_; }  // dropped in a row, up to now
  bool last_skipped() const { return last_skipped_; }   // the latest admit() said false

 private:
  std::string last_finite() const;

  std::string who_;
  NonfiniteOptions opt_;
  std::vector<std::pair<std::string, double>> pending_;
  std::map<std::string, std::pair<double, int64_t>> finite_;  // name → (value, step)
  int64_t skipped_ = 0, consecutive_ = 0;
  bool last_skipped_ = false;
};

}  // namespace beaver::train
