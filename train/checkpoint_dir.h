// Crash-safe checkpoint directories for training runs.
//
//   <root>/step-00000120/   one complete checkpoint (whatever files the stage writes into it)
//   <root>/latest           text file naming the newest complete checkpoint directory
//
// A checkpoint is written into <root>/step-N.tmp-<pid>, fsync'ed, renamed to step-N, and only
// then is `latest` replaced (temp file + rename). A crash at any point leaves `latest` naming the
// previous complete checkpoint, so resume never sees a half-written one.
//
// With a communicator of several ranks every rank calls write_checkpoint: rank 0 makes the
// temporary directory and broadcasts its name, every rank writes its files into it, the ranks
// agree that all succeeded, and only then does rank 0 publish. A rank that fails makes every
// rank throw (the temporary directory is removed); a rank that dies takes the job down (mpirun)
// before the publish, so `latest` still names the previous checkpoint. For the tests of that
// path, BEAVER_TEST_KILL_RANK_IN_SAVE=<rank>[@<step>] makes that rank kill itself (SIGKILL)
// right after writing its files (of that step's checkpoint only, when a step is given).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "csrc/comm.h"

namespace beaver::train {

// Writes checkpoint `step` under `root` by calling write_files(dir) on a fresh temporary
// directory, then publishes it. Keeps the newest `keep` checkpoints (0 = keep all).
// Returns the final directory.
std::string write_checkpoint(const std::string& root, int64_t step,
                             const std::function<void(const std::string& dir)>& write_files,
                             int keep = 0, Communicator* comm = nullptr);

// The directory `latest` names, or "" when there is none. Throws when `latest` names a
// directory that does not exist (a checkpoint deleted by hand).
std::string latest_checkpoint(const std::string& root);

}  // namespace beaver::train
