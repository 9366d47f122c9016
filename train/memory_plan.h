// The memory planner: before anything is allocated, the bytes one rank of a training run
// needs, item by item and role by role, against the device's memory; `beaver plan` prints it,
// `--dry_run` of every train subcommand prints it and stops, and every train subcommand
// refuses a run that does not fit (naming the largest item and the flags that would fit).
//
// One source of truth: the per-model items come from LlamaModel::plan_memory and
// InferenceEngine::plan_memory (model/), which run the planning code the constructors run;
// the optimizer state from ZeroShard::state_elements (train/zero.h), the pieces the Optimizer
// gives AdamW's m and v. Nothing here restates a tensor shape. Items per role:
//   weights          the params arena (the fp32 master on the CPU and for trained CUDA roles;
//                    bf16 for frozen CUDA roles)
//   working copy     bf16 copy of a trained CUDA role's master (what the kernels read)
//   gradients        the grads arena (fp32; the rank's shard at stages 2-3 for a sharded model)
//   Adam moments     m and v (fp32) over this rank's shard, plus the norm and clip scalars
//   activations      the activations arena without the logits chunks; both the planned
//                    figure and the one with the other recomputation setting are shown
//   logits chunks    the LM head's logits chunk (and its bf16 gradient copy), the engine's
//                    decode logits
//   rollout KV cache the generation engine's cache (actor)
//   generation copy  stage 3 with --zero3_generation gathered, the actor: the full inference
//                    copy a rollout generates from (gathered at its start, freed at its end;
//                    counted as if resident). With sharded generation (the default) there is
//                    none: the engine decodes on the sharded actor through its unit slots
// and per rank: the communication buffers (sharded models: the unit gradient buffer, and at
// stage 3 the gathered unit slots, three with prefetch, two with BEAVER_ZERO_PREFETCH=0, which
// the actor's decode steps use too; none at stages 0-1) and the workspace (the GEMM workspace a CUDA context allocates, and the
// largest context scratch: the attention backward's per-row statistics).
//
// Roles marked sharded_model (every role of train sft, rm, cm and of the RL trainers) are
// planned from the sharded model's own plan (rank 0, the fullest). A role without it (a
// PlanSetup made by hand) is planned at stage 3 as a projection of the same design:
// parameters, gradients and optimizer state sharded over the ranks, two units gathered at a
// time. The table says so.
// Not counted: the CUDA context, cuBLAS handles and NCCL's internal buffers (outside Beaver's
// allocations; a few hundred MiB to ~1 GiB per GPU, which the "headroom" line reserves), host
// staging copies (host memory), and transient tensors of a step (a few rows of scores).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "csrc/comm.h"
#include "csrc/tensor.h"
#include "model/config.h"
#include "model/llama.h"

namespace beaver::train {

struct StageArgs;
struct RlhfOptions;
struct PpoConfig;

// One model of a run, as its trainer builds it.
struct PlanRole {
  std::string name;              // "actor", "reference model", ...
  model::LlamaConfig config;
  model::LlamaOptions options;   // head, max batch and length, training, recompute
  // The rollout engine on this role (the actor): batch, prompt width, total length (0: none).
  int64_t engine_batch = 0, engine_prompt = 0, engine_total = 0;
  // The trainer builds this model with the run's zero stage (gradients sharded at stage 2,
  // parameters too at 3; model/param_shards.h): planned from the model's own sharded plan.
  // Otherwise stage 3 is planned as a projection of that design.
  bool sharded_model = false;
  // The engine role at stage 3 (sharded_model): generation from a full inference copy gathered
  // per rollout (--zero3_generation gathered), planned as its "generation copy" item; false:
  // from the sharded model itself (no copy).
  bool generation_copy = false;
};

struct PlanSetup {
  std::vector<PlanRole> roles;
  Device device = Device::CPU;
  int ranks = 1;
  int zero_stage = 0;
  size_t device_memory = 0;  // 0: detect (CUDA device 0's memory, or the host's on the CPU)
};

struct PlanItem {
  std::string role;  // "" for per-rank items
  std::string item;
  size_t bytes = 0;
  std::string note;
};

struct MemoryPlan {
  PlanSetup setup;
  std::vector<PlanItem> items;
  size_t total = 0;          // sum of the items
  size_t headroom = 0;       // reserved for what is not counted (CUDA context, NCCL)
  size_t device_memory = 0;  // what the total is held against
  bool projection = false;   // stage 3 of a role without sharded_model: a projection
  bool fits() const { return total + headroom <= device_memory; }
  const PlanItem& largest() const;
  // The table: per role its items and sum, the per-rank items, the total against the device.
  std::string table() const;
};

// The plan of a setup (reads nothing; the configs are given).
MemoryPlan plan_memory(const PlanSetup& setup);

// The setups the trainers use, from their flags; read the model configs only (never weights):
// `config_of` maps a model path to its config (default: model::checkpoint_config).
using ConfigOf = std::function<model::LlamaConfig(const std::string& path)>;
PlanSetup stage_plan_setup(const StageArgs& args, Device device, int ranks,
                           const ConfigOf& config_of = {});
PlanSetup rlhf_plan_setup(const RlhfOptions& opts, Device device, int ranks,
                          const ConfigOf& config_of = {});

// --zero3_generation auto, resolved (o.zero3_generation itself when it is not auto): gathered
// when the run's plan with the actor's full generation copy fits device_memory (0: detected),
// else sharded; sharded below stage 3 or on one rank (no copy either way). With `agree` (the
// run's ranks; a collective) gathered only when it fits on every rank, so that all ranks
// generate the same way. `why` (when given, at stage 3 on several ranks) gets one line naming
// the choice and the copy's plan against the device.
enum class Zero3Generation;
Zero3Generation resolve_zero3_generation(const RlhfOptions& o, Device device, int ranks,
                                         size_t device_memory, std::string* why = nullptr,
                                         Communicator* agree = nullptr,
                                         const ConfigOf& config_of = {});

// A flag change and the plan it gives, for the refusal message.
struct PlanVariant {
  std::string flags;
  PlanSetup setup;
};
// Throws beaver::Error when the plan does not fit: the total against the device, the largest
// item, and those of the variants that fit (the first three).
void require_fits(const MemoryPlan& plan, const std::vector<PlanVariant>& variants);
// Variants worth suggesting for a setup: generation from the sharded actor (a setup with a
// generation copy), higher implemented zero stages (several ranks), more ranks, halved batch
// and length. `batch_flag` names the batch flag.
std::vector<PlanVariant> standard_variants(const PlanSetup& setup, const std::string& batch_flag);

// "80GB" (1e9), "141GiB" (2^30), "512MiB", "1e9" (bytes); an Error names the bad value.
size_t parse_bytes(const std::string& text);
// "74.5 GiB (80.0 GB)"
std::string format_plan_bytes(size_t bytes);

}  // namespace beaver::train
