// The training optimizer of one LlamaModel: AdamW over the model's flat parameter vector (the
// fp32 master weights ARE the model's params arena), global-norm gradient clipping, a
// learning-rate schedule with warmup, and gradient accumulation.
//
// One optimizer step, after `accumulation` micro-batch backwards have added into the model's
// grads arena (each scaled by loss_scale() = 1/accumulation, so the step sees the mean of the
// micro-batch losses, as DeepSpeed does):
//   norm  = ||grads||_2                    (ops::grad_norm, deterministic)
//   coef  = min(1, max_grad_norm / (norm + 1e-6))  fed to AdamW as grad_scale (no host sync)
//   AdamW with lr = schedule.lr(step), decoupled weight decay only inside decay segments
//   grads zeroed, step += 1
// Decay segments: every parameter except biases (score_head.bias) and, by default, except the
// RMSNorm weights (docs/algorithm.md section 5: "no weight decay on biases and on the per-layer norm
// weights"). decay_norms = true restores decay on norms.
//
// State on disk (save/load): <dir>/optimizer.safetensors holds m and v (f32 [N], N = the flat
// parameter count), <dir>/optimizer.json the step counter and the hyper-parameters it was
// made with, so a resume with different sizes or a different model is refused by name.
// Checkpoints are taken between optimizer steps only (no accumulated gradient is pending).
// save refuses m or v holding a NaN or an infinity; load refuses them too (and a negative v),
// so a resume never starts from a poisoned state.
//
// With a NonfiniteGuard attached (train/nonfinite.h), each step reads the gradient norm back
// and asks the guard first: a refused step clears the gradients and leaves the weights, m, v
// and the step counter untouched (micro_step/flush still return true: a step boundary was
// reached); a stop policy throws from the step.
//
// Data parallel (comm with more than one rank): the gradients are averaged across ranks before
// the norm and the clip; zero_stage 1-3 shard m and v (train/zero.h). With sharded state each
// rank writes <dir>/optimizer-shard-<r>.safetensors (m and v of its pieces, which its
// "pieces" metadata lists as offset:length of the flat vector; a shard without it holds rank
// r's range of Partition{N, shards}); load() copies whatever overlaps this rank's pieces, so a
// run resumes onto another rank count or zero stage.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "csrc/ops/adamw.h"
#include "csrc/safetensors.h"
#include "csrc/tensor.h"
#include "model/llama.h"
#include "train/nonfinite.h"
#include "train/schedule.h"
#include "train/zero.h"

namespace beaver::train {

struct OptimizerConfig {
  Schedule schedule;               // base lr, kind, warmup ratio, total optimizer steps
  double weight_decay = 0.0;       // --weight_decay
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  double max_grad_norm = 1.0;      // --max_grad_norm; <= 0: no clipping (norm still measured)
  int64_t accumulation = 1;        // --gradient_accumulation_steps (micro-batches per step)
  bool decay_norms = false;        // weight decay on RMSNorm weights too
  Communicator* comm = nullptr;    // data-parallel ranks (null: one rank)
  int zero_stage = 0;              // --zero_stage (train/zero.h)
};

// optimizer.json, the record beside the moments (train/optimizer_json.cpp): the step counter,
// the flat parameter count, the number of shards the moments were written in (1: one
// optimizer.safetensors) and, for the reader's information, the hyper-parameters.
struct OptimizerStateRecord {
  int64_t step = 0;
  int64_t numel = 0;
  int shards = 1;
};
nlohmann::ordered_json optimizer_state_json(const OptimizerStateRecord& r,
                                            const OptimizerConfig& cfg);
// Checks the magic, the version, the field types and ranges (step >= 0, shards in [1, 65536])
// and that numel equals the model's `numel`; fails naming `where` and the field.
OptimizerStateRecord parse_optimizer_state(const std::string& text, const std::string& where,
                                           int64_t numel);

class Optimizer {
 public:
  // The model must be built for training. m and v live on the model's device, zeroed.
  Optimizer(model::LlamaModel& model, const OptimizerConfig& cfg);
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  const OptimizerConfig& config() const { return cfg_; }
  // Every later step is submitted to `guard` (not owned; nullptr detaches).
  void set_guard(NonfiniteGuard* guard) { guard_ = guard; }
  // Multiply each micro-batch's loss (its backward seed) by this: 1 / accumulation.
  float loss_scale() const { return 1.0f / float(cfg_.accumulation); }

  // Call once after each micro-batch's backward. Every `accumulation`-th call performs the
  // optimizer step and returns true; the others return false.
  bool micro_step();
  // Performs the step now with whatever has accumulated (the tail of a run whose micro-batch
  // count is not a multiple of accumulation). Returns false when nothing is pending.
  bool flush();

  int64_t step() const { return step_; }            // optimizer steps done
  int64_t pending_micro() const { return micro_; }  // micro-batches since the last step
  // Learning rate of the next step and of the last one taken.
  double next_lr() const { return cfg_.schedule.lr(step_); }
  double last_lr() const { return last_lr_; }
  // Gradient norm before clipping of the last step (read from the device on demand).
  double last_grad_norm() const;
  const std::vector<ops::ParamSegment>& decay_segments() const { return segments_; }
  // The range of the flat vector this rank updates (all of it unless sharded).
  const ZeroShard& shard() const { return shard_; }
  // AdamW moments (f32 [shard().count()], the pieces of shard() one after the other).
  const Tensor& exp_avg() const { return m_.view(); }
  const Tensor& exp_avg_sq() const { return v_.view(); }

  void save(const std::string& dir) const;
  // Every rank calls save (each writes its shard when the state is sharded, rank 0 the rest).
  // Restores m, v and the step counter; fails naming the file when the sizes differ.
  void load(const std::string& dir);

 private:
  void apply();
  // Copies elements [b, e) of a stored moment (checked: finite, v non-negative) into dst.
  static void copy_overlap(const std::string& spath, const char* name, const SafeTensorInfo& t,
                           int64_t b, int64_t e, const Tensor& dst, bool second_moment);

  model::LlamaModel* model_;
  OptimizerConfig cfg_;
  std::vector<ops::ParamSegment> segments_;  // of the whole flat vector
  std::vector<std::vector<ops::ParamSegment>> piece_segments_;  // relative to each piece
  ZeroShard shard_;
  OwnedTensor m_, v_, norm_, coef_;
  int64_t step_ = 0, micro_ = 0;
  double last_lr_ = 0.0;
  bool have_norm_ = false;
  NonfiniteGuard* guard_ = nullptr;
};

}  // namespace beaver::train
