#include "csrc/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string_view>

namespace beaver {

std::optional<LogLevel> parse_log_level(std::string_view s) {
  if (s == "debug") return LogLevel::Debug;
  if (s == "info") return LogLevel::Info;
  if (s == "warn") return LogLevel::Warn;
  if (s == "error") return LogLevel::Error;
  return std::nullopt;
}

namespace {
// The process-wide threshold: BEAVER_LOG at first use, then whatever set_log_threshold says
// (the command line sets it once, before any command runs; atomic so that OpenMP workers that
// log read it safely).
std::atomic<int>& threshold() {
  static std::atomic<int> t = [] {
    const char* v = std::getenv("BEAVER_LOG");
    return int(parse_log_level(v ? v : "info").value_or(LogLevel::Info));
  }();
  return t;
}
}  // namespace

bool log_enabled(LogLevel level) { return int(level) >= threshold().load(std::memory_order_relaxed); }

void set_log_threshold(LogLevel level) { threshold().store(int(level), std::memory_order_relaxed); }

void log_line(LogLevel level, const std::string& msg) {
  static constexpr const char* names[] = {"debug", "info", "warn", "error"};
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  localtime_r(&t, &tm);
  char ts[32];
  std::strftime(ts, sizeof ts, "%H:%M:%S", &tm);
  std::fprintf(stderr, "[%s %s] %s\n", ts, names[int(level)], msg.c_str());
}

}  // namespace beaver
