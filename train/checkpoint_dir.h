// Crash-safe checkpoint directories for training runs.
//
//   <root>/step-00000120/   one complete checkpoint (whatever files the stage writes into it)
//   <root>/latest           text file naming the newest complete checkpoint directory
//
// A checkpoint is written into <root>/step-N.tmp-<pid>, fsync'ed, renamed to step-N, and only
// then is `latest` replaced (temp file + rename). A crash at any point leaves `latest` naming the
// previous complete checkpoint, so resume never sees a half-written one.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace beaver::train {

// Writes checkpoint `step` under `root` by calling write_files(dir) on a fresh temporary
// directory, then publishes it. Keeps the newest `keep` checkpoints (0 = keep all).
// Returns the final directory.
std::string write_checkpoint(const std::string& root, int64_t step,
                             const std::function<void(const std::string& dir)>& write_files,
                             int keep = 0);

// The directory `latest` names, or "" when there is none. Throws when `latest` names a
// directory that does not exist (a checkpoint deleted by hand).
std::string latest_checkpoint(const std::string& root);

}  // namespace beaver::train
