// Learning-rate schedules, as the reference scripts use them (HF get_scheduler semantics): the
// multiplier at optimizer step s (0-based) of `total` steps, with
// warmup = ceil(warmup_ratio * total) steps rising linearly from 0.
//   constant:             1 from the first step: HF's constant schedule ignores the warmup
//                         ratio (the reference's critics use it, so they move from step 0)
//   constant_with_warmup: warmup, then 1
//   linear:   decays linearly to 0 at `total`
//   cosine:   0.5 * (1 + cos(pi * progress)), progress from 0 after warmup to 1 at `total`
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace beaver::train {

enum class ScheduleKind { Constant, ConstantWithWarmup, Linear, Cosine };
// "constant", "constant_with_warmup", "linear", "cosine"
ScheduleKind parse_schedule(std::string_view name);

struct Schedule {
  ScheduleKind kind = ScheduleKind::Cosine;
  double base_lr = 1e-5;
  double warmup_ratio = 0.03;
  int64_t total_steps = 1;

  int64_t warmup_steps() const;  // 0 for constant
  double multiplier(int64_t step) const;
  double lr(int64_t step) const { return base_lr * multiplier(step); }
};

}  // namespace beaver::train
