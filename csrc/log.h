// Logging to stderr with a wall-clock timestamp and a level. The threshold comes from the
// environment variable BEAVER_LOG (debug, info, warn, error; default info), read once.
#pragma once

#include <string>

#include "csrc/error.h"

namespace beaver {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };

bool log_enabled(LogLevel level);
void log_line(LogLevel level, const std::string& msg);

template <typename... Args>
void log_info(const Args&... a) {
  if (log_enabled(LogLevel::Info)) log_line(LogLevel::Info, cat(a...));
}
template <typename... Args>
void log_warn(const Args&... a) {
  if (log_enabled(LogLevel::Warn)) log_line(LogLevel::Warn, cat(a...));
}
template <typename... Args>
void log_debug(const Args&... a) {
  if (log_enabled(LogLevel::Debug)) log_line(LogLevel::Debug, cat(a...));
}
template <typename... Args>
void log_error(const Args&... a) {
  log_line(LogLevel::Error, cat(a...));
}

}  // namespace beaver
