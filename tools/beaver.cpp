// Entry point of the `beaver` binary: one executable, many subcommands (tools/commands.h).
#include <cstdio>
#include <exception>

#include "csrc/error.h"
#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"Beaver: Safe RLHF on LLaMA models, from scratch in C++20/CUDA"};
  app.require_subcommand(1);
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
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const beaver::Error& e) {
    std::fprintf(stderr, "beaver: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "beaver: unexpected error: %s\n", e.what());
    return 1;
  }
  return 0;
}
