// One flag style for every subcommand. Each long flag may be spelled with underscores or with
// dashes (`--output_dir` and `--output-dir` are the same flag); the spelling registered with
// CLI11 is the documented one. normalize_flags rewrites argv to the registered spellings
// before CLI11 parses it, so a flag added to any subcommand gets both spellings with no extra
// code. A long flag that no spelling matches is a usage error with the closest known flag.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace beaver::tools {

// Exit codes of the `beaver` binary.
inline constexpr int kExitRuntimeError = 1;  // the command ran and failed
inline constexpr int kExitUsageError = 2;    // the command line itself is wrong

struct FlagNormalization {
  std::vector<std::string> args;  // argv[1..] with every long flag in its registered spelling
  std::optional<std::string> error;  // set for an unknown flag: "unknown flag --x; did you mean --y?"
};

// Adds --log_level (debug, info, warn, error) to app and to every subcommand under it, so that
// any command takes it anywhere after its name; it sets the log threshold (csrc/log.h) before
// the command runs. Call after every command is registered.
void add_log_level_flag(CLI::App& app);

// Walks argv through app's subcommand tree (all commands must be registered already).
FlagNormalization normalize_flags(CLI::App& app, const std::vector<std::string>& args);

}  // namespace beaver::tools
