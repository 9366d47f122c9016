// ZeRO-style sharding of one model's optimizer work across data-parallel ranks
// (--zero_stage, DeepSpeed's flag). On one rank every stage is stage 0.
//
//   stage 0  gradients all-reduced (averaged); every rank keeps m and v for all N and runs the
//            whole AdamW step (plain data parallel)
//   stage 1  gradients all-reduced; the flat vector is cut into one contiguous range per rank
//            (Partition{N, ranks}); m and v only for the own range; AdamW on it, then the
//            updated parameters (fp32 master and, on CUDA, the bf16 working copy) are
//            all-gathered
//   stage 2  the model shards its gradients (model/param_shards.h): the backward
//            reduce-scatters each unit's gradient (embedding, each layer, norm + head) into the
//            rank's gradient shard as soon as the unit is done, so no full gradient vector
//            exists; m, v and the AdamW step cover the same pieces (the own slice of every
//            unit); the updated slices are all-gathered unit by unit. The clip norm is the
//            square root of the all-reduced sum of the shards' squared norms
//   stage 3  as 2, and the model keeps only its slice of the parameters, gathering one unit at
//            a time for forward and backward (the next unit prefetched while one computes,
//            model/param_shards.h); AdamW updates the shard in place and nothing is gathered
//            after the step. The stages and the RL trainers build every model (the RL
//            trainers' frozen roles too) with the stage and the communicator.
// The layout of a rank's state is its list of pieces (ranges of the flat vector, in order);
// the checkpoint shards name them, so a resume re-shards onto another rank count or stage.
// A stage-2 optimizer on a model that does not shard its gradients (built without the
// communicator) falls back to reduce-scattering the full gradient vector over stage 1's ranges.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "csrc/comm.h"
#include "csrc/ops/adamw.h"
#include "model/llama.h"

namespace beaver::train {

// Checks --zero_stage (0, 1, 2 or 3), naming the flag.
void check_zero_stage(int stage);

// A range of the flat vector this rank updates: elements [global, global + len) of the flat
// vector are at `param` in flat_params() (and flat_working_params()), at `grad` in
// flat_grads() and at `state` in m and v.
struct ZeroPiece {
  int64_t global = 0, param = 0, grad = 0, state = 0, len = 0;
};

class ZeroShard {
 public:
  // comm may be null (one rank). The pieces follow the model's sharding.
  ZeroShard(Communicator* comm, int stage, const model::LlamaModel& model);

  // The pieces of rank `rank` of `ranks` at `stage` for a model with these unit bounds
  // (what the constructor picks for a model that shards its gradients at stages 2-3).
  static std::vector<ZeroPiece> pieces_for(int stage, int ranks, int rank,
                                           const std::vector<int64_t>& bounds);
  static int64_t state_elements(int stage, int ranks, int rank, const std::vector<int64_t>& bounds);

  int stage() const { return stage_; }
  bool sharded() const { return stage_ >= 1 && ranks() > 1; }
  int ranks() const { return comm_ ? comm_->size() : 1; }
  int rank() const { return comm_ ? comm_->rank() : 0; }
  int64_t numel() const { return n_; }  // the whole flat vector
  const std::vector<ZeroPiece>& pieces() const { return pieces_; }
  int64_t count() const { return count_; }  // elements of m and v

  // Averages the gradients across ranks (a no-op where the backward reduced them already).
  void reduce_grads(Context& ctx, const Tensor& grads) const;
  // The global norm of the reduced gradients into norm (f32 [1] on ctx's device).
  void grad_norm(Context& ctx, const Tensor& grads, const Tensor& norm) const;
  // Decay segments (offsets into the flat vector) clipped to piece i, relative to it.
  std::vector<ops::ParamSegment> piece_segments(const std::vector<ops::ParamSegment>& all,
                                                size_t i) const;
  // After the shard's update: every rank gets every rank's pieces of t (flat_params or
  // flat_working_params); a no-op unless sharded with full parameters.
  void gather(Context& ctx, const Tensor& t) const;

 private:
  enum class Mode { Full, Flat, Units };
  Communicator* comm_;
  int stage_;
  int64_t n_ = 0;
  Mode mode_ = Mode::Full;
  bool params_sharded_ = false;
  std::vector<int64_t> bounds_;
  std::vector<ZeroPiece> pieces_;
  int64_t count_ = 0;
  Partition part_;
};

}  // namespace beaver::train
