// The `beaver` binary's subcommands. Each lives in its own tools/cmd_<name>.cpp and registers
// itself on the CLI11 app through one function listed here and called from tools/beaver.cpp.
// A subcommand's callback throws beaver::Error on failure; main prints it and exits 1.
#pragma once

#include <CLI/CLI.hpp>

namespace beaver::tools {

void add_info_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_toyworld_command(CLI::App& app);
void add_plot_command(CLI::App& app);
void add_report_command(CLI::App& app);
void add_convert_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_tokenizer_command(CLI::App& app);
void add_init_command(CLI::App& app);
// `train ppo-lag|ppo|ppo-shaping`; joins an existing `train` subcommand or creates it.
void add_rlhf_command(CLI::App& app);
// `plan`: the memory plan of a training run (train/memory_plan.h).
void add_plan_command(CLI::App& app);
// `eval` and `arena`.
void add_eval_command(CLI::App& app);

}  // namespace beaver::tools
