// ZeRO-style sharding of one model's optimizer work across data-parallel ranks
// (--zero_stage, DeepSpeed's flag). The flat parameter vector of N elements is cut into a
// Partition over the ranks; rank r owns [begin, end).
//
//   stage 0  gradients all-reduced (averaged); every rank keeps m and v for all N and runs the
//            whole AdamW step (plain data parallel)
//   stage 1  gradients all-reduced; m and v only for the own shard; AdamW on the shard, then
//            the updated parameters (fp32 master and, on CUDA, the bf16 working copy) are
//            all-gathered
//   stage 2  as 1, but the gradients are reduce-scattered: each rank receives only the
//            average of its shard (half the traffic of an all-reduce); the clip norm is the
//            square root of the all-reduced sum of the shards' squared norms
// The backward still writes the full gradient vector (one grads arena per model) and the
// forward reads full parameters, so stages 1-2 save the optimizer state (12 bytes of the 16
// per parameter with mixed precision), not the weights or the gradient buffer. Parameter
// sharding (stage 3) is not implemented: it is refused at start.
// On one rank every stage is stage 0.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "csrc/comm.h"
#include "csrc/ops/adamw.h"

namespace beaver::train {

// Checks --zero_stage (0, 1 or 2), naming the flag.
void check_zero_stage(int stage);

class ZeroShard {
 public:
  // comm may be null (one rank).
  ZeroShard(Communicator* comm, int stage, int64_t n);

  // The range [begin, end) of an n-element flat vector whose optimizer state rank `rank` of
  // `ranks` holds at `stage` (what the constructor picks; stage 3 shards like 1 and 2).
  static std::pair<int64_t, int64_t> state_range(int stage, int ranks, int rank, int64_t n);

  int stage() const { return stage_; }
  bool sharded() const { return stage_ >= 1 && ranks() > 1; }
  int ranks() const { return comm_ ? comm_->size() : 1; }
  int rank() const { return comm_ ? comm_->rank() : 0; }
  // The range this rank updates: [0, N) unless sharded.
  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }
  int64_t count() const { return end_ - begin_; }
  const Partition& partition() const { return part_; }

  // Averages the gradients across ranks (all of them, or only the own shard at stage 2).
  void reduce_grads(Context& ctx, const Tensor& grads) const;
  // The global norm of the reduced gradients into norm (f32 [1] on ctx's device).
  void grad_norm(Context& ctx, const Tensor& grads, const Tensor& norm) const;
  // Decay segments (offsets into the flat vector) clipped to the shard and made relative to it.
  std::vector<ops::ParamSegment> shard_segments(const std::vector<ops::ParamSegment>& all) const;
  // After the shard's update: every rank gets every shard of t (a no-op unless sharded).
  void gather(Context& ctx, const Tensor& t) const;

 private:
  Communicator* comm_;
  int stage_;
  Partition part_;
  int64_t begin_ = 0, end_ = 0;
};

}  // namespace beaver::train
