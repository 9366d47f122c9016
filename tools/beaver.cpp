// Entry point of the `beaver` binary: one executable, many subcommands (tools/commands.h).
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "csrc/error.h"
#include "csrc/stop_signal.h"
#include "tools/commands.h"
#include "tools/flags.h"

namespace {

// OpenMP's idle threads: libgomp reads OMP_WAIT_POLICY once, when it is loaded, and by default
// spins between parallel regions. On a machine shared with other jobs that spinning takes the
// cores the other threads of a step are waiting for (a 2-thread CPU step ran several times
// slower), so unless the user chose a policy, the binary re-executes itself once with
// OMP_WAIT_POLICY=passive (same pid, arguments and environment otherwise; docs/performance.md
// has the measurement). If the re-exec fails, it runs on with libgomp's default.
void default_to_passive_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
  execv("/proc/self/exe", argv);
  std::fprintf(stderr, "beaver: note: could not re-execute with OMP_WAIT_POLICY=passive (%s); "
               "idle OpenMP threads will spin\n", std::strerror(errno));
}

}  // namespace

int main(int argc, char** argv) {
  default_to_passive_wait(argv);
  CLI::App app{"Beaver: Safe RLHF on LLaMA models, from scratch in C++20/CUDA"};
  app.require_subcommand(1);
  // Every subcommand inherits this: --help shows each flag's default value.
  app.option_defaults()->always_capture_default();
  beaver::tools::add_info_command(app);
  beaver::tools::add_generate_command(app);
  beaver::tools::add_toyworld_command(app);
  beaver::tools::add_plot_command(app);
  beaver::tools::add_report_command(app);
  beaver::tools::add_convert_command(app);
  beaver::tools::add_export_command(app);
  beaver::tools::add_train_command(app);
  beaver::tools::add_tokenizer_command(app);
  beaver::tools::add_init_command(app);
  beaver::tools::add_eval_command(app);
  // After every other `train` stage, so that the RL algorithms join its `train` subcommand.
  beaver::tools::add_rlhf_command(app);
  beaver::tools::add_plan_command(app);
  beaver::tools::add_log_level_flag(app);  // every command, after they are all registered
  using beaver::tools::kExitRuntimeError;
  using beaver::tools::kExitUsageError;
  // Both spellings of every long flag (tools/flags.h); CLI11 then sees the registered one.
  beaver::tools::FlagNormalization flags =
      beaver::tools::normalize_flags(app, std::vector<std::string>(argv + 1, argv + argc));
  if (flags.error) {
    std::fprintf(stderr, "beaver: error: %s\n", flags.error->c_str());
    return kExitUsageError;
  }
  std::vector<char*> args{argv[0]};
  for (std::string& a : flags.args) args.push_back(a.data());
  try {
    app.parse(static_cast<int>(args.size()), args.data());
  } catch (const CLI::ParseError& e) {
    // --help and --version end parsing with a "success" exception: print and exit 0.
    const int printed = app.exit(e);
    return printed == static_cast<int>(CLI::ExitCodes::Success) ? 0 : kExitUsageError;
  } catch (const beaver::Interrupted& e) {
    std::fprintf(stderr, "beaver: %s\n", e.what());
    return e.exit_code();
  } catch (const beaver::Error& e) {
    std::fprintf(stderr, "beaver: error: %s\n", e.what());
    return kExitRuntimeError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "beaver: unexpected error: %s\n", e.what());
    return kExitRuntimeError;
  }
  return 0;
}
