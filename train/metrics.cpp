#include "train/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "csrc/error.h"

namespace beaver::train {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = long(std::lround(s));
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

MetricsLog::MetricsLog(const std::string& jsonl_path, int64_t total_steps)
    : path_(jsonl_path), total_(total_steps) {
  if (!path_.empty()) {
    out_.open(path_, std::ios::app);
    if (!out_) BEAVER_IO_FAIL(path_, "cannot open metrics file for appending");
  }
}

void MetricsLog::record(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  if (start_step_ < 0) start_step_ = step - 1;
  if (path_.empty()) return;
  nlohmann::ordered_json j;
  j["step"] = step;
  j["time_s"] = std::round(timer_.elapsed_s() * 1000.0) / 1000.0;
  for (const auto& [k, v] : values) {
    if (std::isfinite(v))
      j[k] = v;
    else
      j[k] = nullptr;  // JSON has no NaN/inf; a null marks it
  }
  out_ << j.dump() << '\n';
  out_.flush();
  if (!out_) BEAVER_IO_FAIL(path_, "write failed");
}

std::string MetricsLog::progress_line(int64_t step,
                                      const std::vector<std::pair<std::string, double>>& values,
                                      double tokens_per_s) const {
  std::string s = total_ > 0 ? cat("step ", step, "/", total_) : cat("step ", step);
  char buf[64];
  for (const auto& [k, v] : values) {
    std::snprintf(buf, sizeof buf, " | %s %.4g", k.c_str(), v);
    s += buf;
  }
  if (tokens_per_s > 0) {
    std::snprintf(buf, sizeof buf, " | %.0f tok/s", tokens_per_s);
    s += buf;
  }
  // The rate over the steps this process ran (a resumed run starts past step 0).
  const int64_t done = step - std::max<int64_t>(0, start_step_);
  if (total_ > 0 && done > 0) {
    const double eta = timer_.elapsed_s() / double(done) * double(total_ - step);
    s += " | ETA " + format_duration(eta);
  }
  return s;
}

std::string ProgressMeter::line(int64_t done) const {
  const double t = timer_.elapsed_s();
  std::string s = cat(what_, ": ", done, "/", total_, " ", unit_);
  if (done > 0 && t > 0) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " | %.3g %s/s", double(done) / t, unit_.c_str());
    s += buf;
    s += " | ETA " + format_duration(t / double(done) * double(total_ - done));
  }
  return s;
}

}  // namespace beaver::train
