#include "train/schedule.h"

#include <algorithm>
#include <cmath>

#include "csrc/error.h"

namespace beaver::train {

ScheduleKind parse_schedule(std::string_view name) {
  if (name == "constant") return ScheduleKind::Constant;
  if (name == "constant_with_warmup") return ScheduleKind::ConstantWithWarmup;
  if (name == "linear") return ScheduleKind::Linear;
  if (name == "cosine") return ScheduleKind::Cosine;
  BEAVER_FAIL("unknown lr scheduler '", name, "' (expected constant, constant_with_warmup, linear or cosine)");
}

int64_t Schedule::warmup_steps() const {
  if (kind == ScheduleKind::Constant) return 0;
  return int64_t(std::ceil(warmup_ratio * double(total_steps)));
}

double Schedule::multiplier(int64_t step) const {
  BEAVER_CHECK(total_steps > 0, "schedule: total_steps must be positive, got ", total_steps);
  BEAVER_CHECK(warmup_ratio >= 0 && warmup_ratio <= 1, "schedule: warmup_ratio ", warmup_ratio,
               " outside [0, 1]");
  const int64_t warm = warmup_steps();
  if (step < warm) return double(step) / double(std::max<int64_t>(1, warm));
  if (kind == ScheduleKind::Constant || kind == ScheduleKind::ConstantWithWarmup) return 1.0;
  const double progress =
      double(step - warm) / double(std::max<int64_t>(1, total_steps - warm));
  if (kind == ScheduleKind::Linear) return std::max(0.0, 1.0 - progress);
  return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, progress))));
}

}  // namespace beaver::train
