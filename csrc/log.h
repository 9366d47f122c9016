// Logging to stderr with a wall-clock timestamp and a level. The threshold is info unless the
// environment variable BEAVER_LOG names another level (debug, info, warn, error); the `beaver`
// binary's --log_level flag (every subcommand has it) overrides both before the command runs.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "csrc/error.h"

namespace beaver {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };

bool log_enabled(LogLevel level);
// The level a name stands for ("debug", "info", "warn", "error"); nullopt for anything else.
std::optional<LogLevel> parse_log_level(std::string_view name);
// Sets the process's threshold (the command line's --log_level, before a command starts).
void set_log_threshold(LogLevel level);
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
