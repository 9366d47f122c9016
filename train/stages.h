// The first three stages of Safe RLHF (docs/algorithm.md sections 1-4) as library calls, so that the
// `beaver train sft|rm|cm` subcommands and the tests run the same code:
//
//   SFT  causal LM, mean cross-entropy over answer tokens (BOS + prompt + answer + EOS, right
//        padding); eval: token-weighted loss and perplexity on the eval set.
//   RM   score model (LM head dropped, fresh score head when starting from a causal LM),
//        helpfulness pairs, L = pairwise -log σ(r_b - r_w) + reg·mean(r²) (train/losses.h);
//        eval: ranking accuracy, reward mean/std.
//   CM   score model, harmlessness pairs, pairwise + both sign terms + reg; eval: ranking
//        accuracy, sign accuracy, inconsistent pairs, and a PNG histogram of the end costs of
//        safe vs unsafe responses.
//
// Output folder layout:
//   <output_dir>/metrics.jsonl               one record per optimizer step ("loss", "lr", ...)
//                                            and per evaluation ("eval_*" keys)
//   <output_dir>/checkpoints/step-N, latest  resumable checkpoints (train/trainer_state.h)
//   <output_dir>/beaver.json, model.safetensors, tokenizer files: the final model
//   <output_dir>/eval/cost-histogram-step-N.png (CM)
// Steps are optimizer steps (one per gradient_accumulation_steps micro-batches, accumulation
// carries over epoch boundaries, a partial tail is applied at the end). save_interval and
// eval_interval count optimizer steps; eval_interval 0 evaluates at the end of every epoch.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "csrc/comm.h"
#include "model/llama.h"
#include "csrc/stop_signal.h"
#include "train/data.h"
#include "train/losses.h"
#include "train/nonfinite.h"
#include "train/optimizer.h"
#include "train/plot.h"
#include "train/schedule.h"

namespace beaver::model {
class LlamaModel;
}

namespace beaver::train {

class Optimizer;

enum class Stage { SFT, RM, CM };
std::string_view stage_name(Stage s);  // "sft" | "rm" | "cm"

struct StageArgs {
  Stage stage = Stage::SFT;
  std::string model_name_or_path;           // Beaver checkpoint or HF folder (+ tokenizer.model)
  std::vector<std::string> train_datasets;  // path[:proportion]
  std::vector<std::string> eval_datasets;   // empty: split eval_split_ratio off the train set
  double eval_split_ratio = 0.0;
  int64_t max_length = 512;
  int64_t epochs = 3;
  int64_t per_device_train_batch_size = 4;  // pairs for RM/CM (2x rows)
  int64_t per_device_eval_batch_size = 4;
  int64_t gradient_accumulation_steps = 1;
  double learning_rate = 2e-5;
  ScheduleKind lr_scheduler_type = ScheduleKind::Cosine;
  double lr_warmup_ratio = 0.03;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9, adam_beta2 = 0.95;
  double max_grad_norm = 1.0;
  uint64_t seed = 42;
  std::string output_dir;
  int64_t save_interval = 0;  // optimizer steps between checkpoints (0: only at the end)
  int64_t eval_interval = 0;  // optimizer steps between evaluations (0: once per epoch)
  ScoreLossConfig score_loss;  // RM/CM: --loss_type, --regularization
  BadRecordPolicy bad_record = BadRecordPolicy::Stop;
  InconsistentPairPolicy inconsistent_pairs = InconsistentPairPolicy::Stop;  // CM only
  int threads = 0;            // CPU threads (0: OpenMP default)
  bool use_cuda = false;
  bool resume = false;        // continue from <output_dir>/checkpoints/latest
  int64_t max_steps = 0;      // stop after this many optimizer steps in total (0: no limit)
  int64_t log_interval = 1;   // progress line every N steps
  int keep_checkpoints = 2;   // newest checkpoints kept (0: all)
  bool write_final_model = true;
  NonfiniteOptions nonfinite;  // --nonfinite, --max_consecutive_skips (train/nonfinite.h)
  // Data parallel (train/distributed.h): null = one rank. Each rank takes
  // per_device_train_batch_size items of every global batch; train_batch_size (DeepSpeed's
  // global batch, 0: per-device x accumulation x ranks) sets the per-device size instead.
  Communicator* comm = nullptr;
  int zero_stage = 0;             // --zero_stage (train/zero.h)
  int64_t train_batch_size = 0;   // --train_batch_size
  // Called after each training micro-batch's backward, before the optimizer sees it, with the
  // run's micro-batch count (1-based), the model (its gradients included) and the optimizer:
  // a probe for tests and diagnostics, which may read or alter the gradients. Empty: none.
  std::function<void(int64_t micro_batch, model::LlamaModel&, const Optimizer&)> after_backward;
  // Graceful stop (csrc/stop_signal.h): when set and a SIGINT or SIGTERM arrives, the run ends
  // after the current optimizer step with a resumable checkpoint and throws Interrupted.
  const StopSignalGuard* stop = nullptr;
};

struct StageResult {
  int64_t steps = 0;                      // optimizer steps at the end
  double first_loss = 0.0, last_loss = 0.0;  // train loss of the first and last step of this run
  std::map<std::string, double> eval;     // last evaluation ("eval_loss", "eval_accuracy", ...)
  int64_t train_tokens = 0;               // valid tokens processed by this invocation
  double seconds = 0.0;                   // wall time of the training loop
  double tokens_per_s() const { return seconds > 0 ? double(train_tokens) / seconds : 0.0; }
  std::string final_model_dir;
  int64_t skipped_steps = 0;              // dropped for non-finite values (--nonfinite skip)
};

// The model a stage builds (a's per-device batch and max_length already resolved).
model::LlamaOptions stage_model_options(const StageArgs& a);
// The optimizer a stage runs with (its flags and defaults) over total_steps optimizer steps.
OptimizerConfig stage_optimizer_config(const StageArgs& a, int64_t total_steps);

// Runs one stage end to end. --max_steps caps the run's optimizer steps and sizes its schedule;
// a resume of a run that already reached its last step trains and writes nothing.
// --resume without a checkpoint in <output_dir>/checkpoints is an error. Errors (bad flags,
// bad data under --bad_record stop, a model that does not fit) throw beaver::Error naming
// what and where.
StageResult run_stage(const StageArgs& args);

// The panels of a stage's <output>/curves.png (written at the end of run_stage), read from its
// metrics.jsonl: training loss with eval_loss, accuracy with eval_accuracy (RM, CM), mean
// reward (RM) or cost (CM) on training and eval pairs, learning rate and gradient norm.
std::vector<plot::Panel> stage_curve_panels(const std::string& metrics_jsonl);

}  // namespace beaver::train
