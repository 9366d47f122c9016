#include "csrc/log.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string_view>

namespace beaver {

namespace {
LogLevel threshold_from_env() {
  const char* v = std::getenv("BEAVER_LOG");
  if (v == nullptr) return LogLevel::Info;
  const std::string_view s(v);
  if (s == "debug") return LogLevel::Debug;
  if (s == "warn") return LogLevel::Warn;
  if (s == "error") return LogLevel::Error;
  return LogLevel::Info;
}
}  // namespace

bool log_enabled(LogLevel level) {
  static const LogLevel threshold = threshold_from_env();  // immutable after first use
  return int(level) >= int(threshold);
}

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
