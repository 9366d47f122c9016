// `beaver toyworld`: writes the embedded default world (train/toyworld.h) into a folder.
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "csrc/atomic_file.h"
#include "csrc/log.h"
#include "tools/commands.h"
#include "train/toyworld.h"

namespace beaver::tools {

void add_toyworld_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("toyworld", "Write the seeded toy safety world's data sets");
  auto cfg = std::make_shared<toyworld::WorldConfig>();
  auto out = std::make_shared<std::string>();
  auto overwrite = std::make_shared<bool>(false);
  cmd->add_option("--output,-o", *out, "Folder to write the world into (refused if it holds "
                  "anything)")->required();
  cmd->add_flag("--overwrite", *overwrite, "Write into a non-empty --output folder");
  cmd->add_option("--seed", cfg->seed, "World seed (same seed, byte-identical files)");
  cmd->add_option("--sft_examples", cfg->sft_examples, "SFT examples")->check(CLI::PositiveNumber);
  cmd->add_option("--preference_pairs", cfg->preference_pairs, "Preference pairs")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--ppo_prompts", cfg->ppo_prompts, "Prompt-only set size")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--eval_prompts", cfg->eval_prompts, "Held-out evaluation prompts")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--label_noise", cfg->label_noise, "Chance a preference label is flipped")
      ->check(CLI::Range(0.0, 0.5));
  cmd->add_option("--harmful_fraction", cfg->harmful_fraction, "Share of harmful prompts")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--sft_compliance", cfg->sft_compliance,
                  "Share of harmful SFT prompts answered by compliance")
      ->check(CLI::Range(0.0, 1.0));
  cmd->callback([cfg, out, overwrite] {
    check_output_folder(*out, *overwrite, "toyworld --output");
    toyworld::write_world(*cfg, *out);
    log_info("toyworld: wrote seed ", cfg->seed, " world to ", *out, " (", cfg->sft_examples,
             " SFT examples, ", cfg->preference_pairs, " preference pairs, ", cfg->ppo_prompts,
             " RL prompt records (templates repeat: PPO trains on the distinct texts), ",
             cfg->eval_prompts, " held-out eval prompts)");
  });
}

}  // namespace beaver::tools
