// How subcommands run on MPI ranks: `mpirun -np N beaver ...` runs N ranks, the plain command
// one. run_on_ranks makes the process's communicator (csrc/comm.h) and runs the subcommand
// with it; on several ranks an error on any rank stops the whole job with a message naming
// the rank and the error (MPI_Abort), so no rank waits forever in a collective. On one rank
// the error goes to main as usual.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "csrc/comm.h"

namespace beaver::train {
enum class Zero3Generation;  // train/rlhf.h
}

namespace beaver::tools {

void run_on_ranks(const std::function<void(Communicator&)>& body);

// For subcommands that run on one rank only: under mpirun with several ranks, stops the job
// with a message saying so (instead of N copies writing the same files).
void require_one_rank(const std::string& command);

// --zero_stage (DeepSpeed's flag) on a training subcommand.
void add_zero_stage_flag(CLI::App* cmd, int& stage);
// --zero3_generation sharded|gathered (the RL trainers and `beaver plan`).
void add_zero3_generation_flag(CLI::App* cmd, train::Zero3Generation& mode);

}  // namespace beaver::tools
