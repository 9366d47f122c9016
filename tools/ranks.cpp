// Subcommands on MPI ranks (ranks.h).
#include "tools/ranks.h"

#include <exception>

#include "csrc/error.h"
#include "csrc/stop_signal.h"

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
                  "layer; train sft, rm and cm)");
}

}  // namespace beaver::tools
