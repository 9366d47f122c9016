// How subcommands run on MPI ranks: `mpirun -np N beaver ...` runs N ranks, the plain command
// one. run_on_ranks makes the process's communicator (csrc/comm.h) and runs the subcommand
// with it; on several ranks an error on any rank stops the whole job with a message naming
// the rank and the error (MPI_Abort), so no rank waits forever in a collective. On one rank
// the error goes to main as usual.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "csrc/comm.h"

namespace beaver::tools {

void run_on_ranks(const std::function<void(Communicator&)>& body);

// --zero_stage (DeepSpeed's flag) on a training subcommand.
void add_zero_stage_flag(CLI::App* cmd, int& stage);

}  // namespace beaver::tools
