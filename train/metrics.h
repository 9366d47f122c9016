// Run records: every stage appends one JSON object per step to <run>/metrics.jsonl (read back
// by `beaver plot`) and prints a progress line with step, the chosen metrics, tokens/s and ETA.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "csrc/timer.h"

namespace beaver::train {

class MetricsLog {
 public:
  // Opens (appends to) the JSONL file; an empty path keeps records in memory only.
  explicit MetricsLog(const std::string& jsonl_path, int64_t total_steps = 0);
  // Records one step: (name, value) pairs, plus "step" and the wall time "time_s".
  void record(int64_t step, const std::vector<std::pair<std::string, double>>& values);
  // "step 12/100 | loss 0.6931 | acc 0.5000 | 1234 tok/s | ETA 1m05s" from the last record.
  std::string progress_line(int64_t step, const std::vector<std::pair<std::string, double>>& values,
                            double tokens_per_s) const;
  double elapsed_s() const { return timer_.elapsed_s(); }

 private:
  std::ofstream out_;
  std::string path_;
  int64_t total_;
  int64_t start_step_ = -1;  // the step before this process's first record (a resume's start)
  Timer timer_;
};

// "1h02m", "3m05s", "12s".
std::string format_duration(double seconds);

// Progress of a loop over a known number of items (prompts of eval, arena, generate):
// "eval: 32/100 prompts | 4.1 prompts/s | ETA 17s", the rate and ETA over the time since
// construction.
class ProgressMeter {
 public:
  ProgressMeter(std::string what, std::string unit, int64_t total)
      : what_(std::move(what)), unit_(std::move(unit)), total_(total) {}
  std::string line(int64_t done) const;

 private:
  std::string what_, unit_;
  int64_t total_;
  Timer timer_;
};

}  // namespace beaver::train
