// Subcommands on MPI ranks (ranks.h).
#include "tools/ranks.h"

#include <exception>

#include "csrc/error.h"
#include "csrc/stop_signal.h"
#include "train/rlhf.h"

namespace beaver::tools {

void run_on_ranks(const std::function<void(Communicator&)>& body) {
  std::unique_ptr<Communicator> comm = communicator_from_environment();
  if (!comm->distributed()) {
    body(*comm);
    return;
  }
  try {
    body(*comm);
  } catch (const Interrupted&) {
    throw;  // every rank agreed to stop and wrote its share of the checkpoint: exit as one
  } catch (const std::exception& e) {
    comm->abort(e.what());
  }
}

void require_one_rank(const std::string& command) {
  std::unique_ptr<Communicator> comm = communicator_from_environment();
  if (comm->distributed())
    comm->abort("beaver " + command + " runs on one rank; data parallel over mpirun covers "
                "`beaver train sft|rm|cm|ppo-lag|ppo|ppo-shaping`, `eval`, `arena` and `generate "
                "--prompts`; run it without mpirun");
}

void add_zero_stage_flag(CLI::App* cmd, int& stage) {
  cmd->add_option("--zero_stage", stage,
                  "Sharding across data-parallel ranks: 0 none, 1 optimizer state, 2 also the "
                  "gradients (reduce-scattered per layer), 3 also the parameters (gathered per "
                  "layer for forward, backward and, see --zero3_generation, generation)");
}

void add_zero3_generation_flag(CLI::App* cmd, train::Zero3Generation& mode) {
  cmd->add_option_function<std::string>(
         "--zero3_generation",
         [&mode](const std::string& v) { mode = train::parse_zero3_generation(v); },
         "What rollouts generate from at --zero_stage 3: sharded (the sharded actor, every unit "
         "all-gathered per decode step and dropped again; no full copy of the weights), "
         "gathered (a full inference copy of the actor gathered once per rollout: faster "
         "generation for the whole actor's weights on every rank, which --dry_run shows as "
         "'generation copy') or auto (gathered when the memory plan fits with the copy, else "
         "sharded; the log says which); the same tokens either way; no effect below stage 3")
      ->check(CLI::IsMember({"auto", "sharded", "gathered"}))
      ->default_str(std::string(train::zero3_generation_name(mode)));
}

}  // namespace beaver::tools
