// Save and resume of a whole training run, on top of the crash-safe checkpoint directories of
// train/checkpoint_dir.h. One checkpoint (taken between optimizer steps) holds:
//
//   model/               the weights as a Beaver checkpoint in f32 (model/checkpoint.h), with
//                        the tokenizer files: loadable by `beaver generate`, exportable by
//                        `beaver export`, and bit-exact for resuming
//   optimizer/           m, v and the step counter (train/optimizer.h)
//   trainer_state.json   stage, epoch, index into the epoch's shuffled order, micro-batch count,
//                        the seed and the position of the trainer's Philox stream, the number of
//                        metrics.jsonl lines written so far, and the run's configuration
//
// Every random choice a stage makes is a function of (seed, epoch) or of the saved stream
// position, and the CPU ops are deterministic for a fixed thread count, so a run resumed from a
// checkpoint reproduces the uninterrupted run bitwise (weights and metrics). On resume the
// metrics file is cut back to the lines the checkpoint knew about (a crash may have left
// records of steps that will now be redone).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "model/config.h"
#include "csrc/comm.h"
#include "model/llama.h"
#include "train/optimizer.h"

namespace beaver::train {

struct TrainerProgress {
  std::string stage;           // "sft", "rm", "cm", ...
  int64_t epoch = 0;           // epoch in progress (0-based)
  int64_t index = 0;           // next sample position in that epoch's shuffled order
  int64_t micro_batches = 0;   // micro-batches done over the whole run
  uint64_t seed = 0;
  uint64_t rng_position = 0;   // position of the stage's Philox stream (seed, stream 0x7a1e)
  int64_t metrics_lines = 0;   // lines of metrics.jsonl that belong to this state
  nlohmann::json run_config;   // the flags that must match on resume (stage-defined)
};

// Writes one checkpoint for `progress` under root (root/step-<optimizer step>) and publishes it;
// keeps the newest `keep` (0 = all). Returns the checkpoint directory. With several ranks
// every rank calls it: rank 0 writes the model (once, in the Beaver format) and the progress,
// each rank its optimizer shard (train/checkpoint_dir.h says how the publish is guarded).
std::string save_trainer_state(const std::string& root, const model::LlamaModel& m,
                               const Optimizer& opt, const TrainerProgress& progress,
                               const std::string& tokenizer_dir, int keep = 0,
                               Communicator* comm = nullptr);

// Loads the newest checkpoint under root into the model, the optimizer and `progress`.
// Returns false (and changes nothing) when root holds none. Fails naming the file when the
// stored stage or run_config differs from the ones in `progress` (a resume with other flags
// would silently train something else).
bool load_trainer_state(const std::string& root, model::LlamaModel& m, Optimizer& opt,
                        TrainerProgress& progress);

// Keeps the first `lines` lines of a text file (creates nothing when it does not exist;
// fails when it has fewer lines).
void truncate_lines(const std::string& path, int64_t lines);
// Number of '\n'-terminated lines of a file (0 when it does not exist).
int64_t count_lines(const std::string& path);

}  // namespace beaver::train
