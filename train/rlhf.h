// The PPO-Lagrangian trainer (docs/algorithm.md section 5) and its two baselines (section 6), all
// through one LlamaModel class:
//   actor            LM head, trained          (PTX loss on the SFT set when one is given)
//   reference        LM head, frozen           (the actor's starting point)
//   reward model     score head, frozen
//   cost model       score head, frozen        (ppo: optional, logged only)
//   reward critic    score head, trained, initialised from the reward model
//   cost critic      score head, trained, initialised from the cost model (ppo-lag only)
//
// One RL step = one rollout batch of per_device_prompt_batch_size prompts:
//   1. generation: micro-batches of per_device_train_batch_size prompts (template applied,
//      left padded) through the InferenceEngine with the actor's weights (temperature, top_p;
//      max_length = padded prompt width + new tokens, as HF generate counts it);
//   2. scoring, no gradients: actor and reference log-probs of the sampled tokens, RM and CM
//      end scores, critic values at every action; per-token rewards/costs and GAE (ppo.h);
//   3. the batch's costs enter the episode-cost window (ppo-lag; a batch holding a non-finite
//      cost does not, and λ takes no update in that step: train/nonfinite.h);
//   4. training: update_iters passes over the micro-batches; each micro-step is one SGD step
//      on log λ (ppo-lag, once lambda_update_delay_steps micro-steps have passed, as the
//      reference counts its global_step), then one optimizer step of the actor (PPO-clip loss;
//      with PTX, half of it plus half of ptx_coeff × the CE of one SFT batch of the same size,
//      the SFT batches drawn once per RL step and reused by every pass) and one of each critic
//      (clipped value loss).
// Each step appends a record to <output>/metrics.jsonl (train/metrics.h); curves are drawn at
// the end (and every plot_steps) into <output>/curves.png.
//
// Checkpoints (between RL steps) hold the actor and both critics (weights and optimiser
// state), λ and its cost window, and the run's position: epoch, index into the epoch's seeded
// prompt order, the number of sequences sampled (sampling seeds derive from it), the PTX
// loader's pass and position, and the metrics lines written. Every random choice is a
// function of these, so a resumed run continues the uninterrupted one bitwise on the CPU.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "csrc/comm.h"
#include "csrc/context.h"
#include "csrc/stop_signal.h"
#include "model/engine.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "train/data.h"
#include "train/nonfinite.h"
#include "train/plot.h"
#include "train/ppo.h"
#include "train/rollout.h"

namespace beaver::train {

struct SftBatch;

// "ppo-lag" | "ppo" | "ppo-shaping" and back; anything else is an Error naming the value.
PpoAlgorithm parse_ppo_algorithm(std::string_view s);
std::string_view ppo_algorithm_name(PpoAlgorithm a);

// The micro-batch every model of the RL stage is built for (generation, scoring, training).
int64_t rlhf_micro_batch(const PpoConfig& c);

// --zero3_generation: what a rollout generates from when the actor's parameters are sharded
// (ZeRO stage 3 on several ranks).
//   sharded   the sharded actor itself, unit by unit: each decode step all-gathers every unit
//             (the next one prefetched) and drops it again; no full copy of the parameters
//             ever exists (the reference's ZeRO-3 generation, HF generate with synced_gpus);
//   gathered  a full inference copy of the actor gathered once per rollout and freed after it
//             (a hybrid engine, as DeepSpeed-Chat's): one gather per rollout instead of one per
//             decode step per unit, for the copy's memory (the whole actor in the work dtype);
//   auto      gathered when the run's memory plan fits with the copy, else sharded
//             (resolve_zero3_generation, train/memory_plan.h). Both give the same tokens.
enum class Zero3Generation { Auto, Sharded, Gathered };
// "auto" | "sharded" | "gathered" and back; anything else is an Error naming the value.
Zero3Generation parse_zero3_generation(std::string_view s);
std::string_view zero3_generation_name(Zero3Generation g);

struct RlhfOptions {
  PpoAlgorithm algorithm = PpoAlgorithm::PpoLag;
  PpoConfig ppo{};
  // Model folders (Beaver checkpoints or HF folders). Empty critic paths: initialise from the
  // reward / cost model. cost_model may be empty for ppo only.
  std::string actor_model, reward_model, cost_model, reward_critic_model, cost_critic_model;
  std::vector<DatasetSpec> train_datasets;  // prompt-only set
  std::vector<DatasetSpec> ptx_datasets;    // SFT set for the PTX loss (empty: no PTX)
  BadRecordPolicy bad_records = BadRecordPolicy::Stop;
  std::string output_dir;    // metrics, curves and the final actor; empty: nothing written
  int64_t max_steps = 0;     // RL steps to run at most (0: all epochs)
  int64_t plot_steps = 0;    // redraw the curves every N steps (0: at the end only)
  bool save_actor = true;    // write the trained actor into output_dir at the end
  // Checkpoints under <output_dir>/checkpoints (train/checkpoint_dir.h): every save_interval RL
  // steps (0: only at the end), the newest keep_checkpoints kept (0: all). resume continues
  // from the latest one; without it, a folder that already holds checkpoints is an Error.
  int64_t save_interval = 0;
  int keep_checkpoints = 2;
  bool resume = false;
  // Graceful stop (csrc/stop_signal.h): when set and a SIGINT or SIGTERM arrives, the run ends
  // after the current RL step with a checkpoint (when output_dir is set) and throws Interrupted.
  const StopSignalGuard* stop = nullptr;
  NonfiniteOptions nonfinite;  // --nonfinite, --max_consecutive_skips (train/nonfinite.h)
  // Data parallel (train/distributed.h; null: one rank). Each RL step takes a global batch of
  // per_device_prompt_batch_size x ranks prompts; global micro-batch m is the ranks' m-th
  // micro-batches side by side (rank r: the r-th slice of per_device_train_batch_size), and
  // sequence i of the global batch samples with the seed of global index i, so N ranks roll
  // out what one rank with an N-times larger micro-batch does. Gradients are averaged across
  // ranks (the Optimizer's comm path), λ's window takes every rank's costs. zero_stage
  // (train/zero.h): 1 shards the optimizer state, 2 also the gradients (each model's backward
  // reduce-scatters unit by unit), 3 also the parameters of all six roles (every forward and
  // backward gathers unit by unit; generation as zero3_generation says).
  Communicator* comm = nullptr;
  int zero_stage = 0;
  Zero3Generation zero3_generation = Zero3Generation::Auto;  // resolved at construction
  // --prompt_batch_size: the global prompt batch; 0: per_device_prompt_batch_size x ranks.
  // One that does not divide by the rank count is an Error at start.
  int64_t prompt_batch_size = 0;
  // --reuse_scoring_forward: the first micro-step of the first PPO epoch runs its actor and
  // critic backward passes from the activations of the scoring forward over the same
  // micro-batch (same weights, same inputs: the same step, bitwise) instead of running that
  // forward again. Off: every micro-step runs its own forward.
  bool reuse_scoring_forward = true;
};

// What one RL step measured (means over the rollout unless said otherwise).
struct StepStats {
  int64_t step = 0;  // 1 for the first RL step: the metrics' "step", as in SFT/RM/CM
  double lambda = 0, episode_cost = 0;  // λ after the update, J̄_C used by it
  bool lambda_updated = false;
  double reward = 0, cost = 0;          // mean R, mean C
  double kl = 0;                        // mean over sequences of Σ_t (logπ_old - logπ_ref)
  double response_length = 0;           // mean generated tokens (EOS counted)
  double eos_fraction = 0;              // share of responses that ended with EOS
  double actor_loss = 0, ptx_loss = 0, reward_critic_loss = 0, cost_critic_loss = 0;
  double actor_clip_fraction = 0, approx_kl = 0;
  double reward_advantage = 0, reward_return = 0, reward_value = 0;  // masked means
  double cost_advantage = 0, cost_return = 0, cost_value = 0;
  double actor_lr = 0, critic_lr = 0;
  int64_t skipped_steps = 0;  // optimizer steps dropped for non-finite values, whole run
  double actor_grad_norm = 0;           // mean over micro-steps, before clipping
  // Time split and throughput: generated tokens per second for generation (its time includes
  // gathering the actor's copy under --zero3_generation gathered, and a rank's join steps when
  // it generates from the sharded actor); rollout tokens (prompt + response) per second through
  // the scoring passes and through training.
  double generation_s = 0, scoring_s = 0, training_s = 0;
  double generation_tokens_per_s = 0, scoring_tokens_per_s = 0, training_tokens_per_s = 0;

  std::vector<std::pair<std::string, double>> metrics() const;
};

// A scored rollout micro-batch: everything the PPO update needs, fixed for the whole step.
struct ScoredRollout {
  RolloutBatch batch;
  std::vector<float> logp_old, ref_logp;   // [B, S]
  std::vector<float> reward, cost;         // [B] raw end scores (cost empty without a CM)
  std::vector<float> values_r, values_c;   // [B, S] critic values (values_c: ppo-lag)
  std::vector<float> rewards, costs;       // [B, S] per-token, KL-shaped (costs: ppo-lag)
  Gae gae_r, gae_c;                        // per channel (gae_c: ppo-lag)
};

// rlhf_state.json, the progress record of an RL checkpoint (train/rlhf_state_json.cpp, apart
// from the trainer so that the parser stands alone): the position of the run, λ's state and
// the threshold in force, and the run's configuration.
struct RlhfProgress {
  int64_t global_step = 0, epoch = 0, index = 0;
  uint64_t sequences_sampled = 0, ptx_cycle = 0;
  int64_t ptx_position = 0, lambda_steps = 0, metrics_lines = 0;
  LagrangeMultiplier::State lagrange;
  double threshold = 0.0;
  double cost_scale = 1.0;  // --cost_unit unsafe_probability's resolved scale (1: score unit)
  int ranks = 0;  // ranks of the run that wrote it (0: not recorded, a file older than the field)
};
nlohmann::ordered_json rlhf_state_json(const RlhfProgress& p,
                                       const nlohmann::json& run_config);
// The run-configuration keys a checkpoint leaves out at their default value (so that one
// written before the key existed still resumes), with those defaults: RlhfTrainer's
// run_config() drops them at the default, and parse_rlhf_state compares them with the default
// filled in on both sides (a run started with a PID gain or another cost unit does not resume
// without it).
const std::vector<std::pair<std::string, nlohmann::json>>& rlhf_optional_run_config();
// Checks the magic, the version, that every key of `run_config` is stored with the same value,
// that the counters are non-negative integers, and λ's state as `lagrange` would restore it
// (finite log λ and costs, at most its window of costs) and a finite threshold; fails naming
// `where` and the field. `ranks` is this run's rank count: the per-device prompt and train
// batch sizes are compared as the global prompt batch and global micro-batch they make on
// the stored run's ranks and on these (a file without "ranks": on as many as this run), so a
// checkpoint resumes on another rank count with the same global batches.
RlhfProgress parse_rlhf_state(const std::string& text, const std::string& where,
                              const nlohmann::json& run_config,
                              const LagrangeMultiplier::Options& lagrange, int ranks = 1);

class RlhfTrainer {
 public:
  RlhfTrainer(Context& ctx, const RlhfOptions& opts);
  ~RlhfTrainer();
  RlhfTrainer(const RlhfTrainer&) = delete;
  RlhfTrainer& operator=(const RlhfTrainer&) = delete;

  // The whole run: epochs over the prompt set (or max_steps), records, curves, final actor.
  void train();

  // One RL step on these prompts (token ids, template already applied; the global batch: at
  // most per_device_prompt_batch_size x ranks of them, every rank passing the same list).
  StepStats step(const std::vector<std::vector<int32_t>>& prompts);

  // Generation of one micro-batch (at most per_device_train_batch_size prompts), unscored.
  ScoredRollout rollout(const std::vector<std::vector<int32_t>>& prompts);
  // The gradient-free passes over s.batch: log-probs, end scores, values, per-token rewards
  // and costs, GAE.
  void score(ScoredRollout& s);

  // --target_unsafe_share or --target_unsafe_ratio: samples calibration_prompts responses (a
  // seeded order of the prompts of its own, cycled when they exceed the prompts) from the
  // current actor, scores them with the cost model, and sets λ's threshold to the
  // resolved one (train() calls it before the first update of a fresh run). Sampling uses a
  // seed stream of its own, so training samples the same sequences with or without it.
  ResolvedThreshold calibrate_threshold();

  // --constraint_check_responses N > 0: samples N fresh responses of the current actor on
  // training prompts (a seeded order of its own, cycled when N exceeds the prompts; its own seed
  // stream), scores them with the cost model and judges the constraint on them: met when their
  // mean cost is at most λ's threshold. Every rank joins (each generates its slice; the costs
  // are summed in global order), so every rank returns the same verdict. train() calls it
  // after the last update.
  struct ConstraintCheck {
    int64_t responses = 0;
    // mean_cost and standard_error in the constrained unit (--cost_unit); unsafe_share: the
    // share with a score > 0; unsafe_probability: the mean σ(score).
    double mean_cost = 0.0, standard_error = 0.0, unsafe_share = 0.0, unsafe_probability = 0.0;
    double threshold = 0.0;
    double upper_bound = 0.0;  // mean + cost_confidence · standard error
    bool met = false;
  };
  ConstraintCheck check_constraint();

  // Token ids of a prompt text with the conversation template applied (BOS first).
  std::vector<int32_t> encode_prompt(const std::string& text) const;
  // The prompt set after tokenisation (prompts that leave no room for a response dropped).
  const std::vector<std::vector<int32_t>>& prompt_tokens() const { return prompts_; }
  // Response text of generated ids.
  std::string decode(const std::vector<int32_t>& ids) const;

  const LagrangeMultiplier& lagrange() const { return *lagrange_; }
  LagrangeMultiplier& lagrange() { return *lagrange_; }
  int64_t global_step() const { return global_step_; }
  int64_t lambda_steps() const { return lambda_steps_; }
  // SFT samples the PTX loader has handed out so far (0 without PTX).
  int64_t ptx_samples_drawn() const;
  model::LlamaModel& actor() { return *actor_; }
  model::LlamaModel& reference() { return *ref_; }
  model::LlamaModel& reward_model() { return *rm_; }
  model::LlamaModel* cost_model() { return cm_.get(); }
  model::LlamaModel& reward_critic() { return *critic_r_; }
  model::LlamaModel* cost_critic() { return critic_c_.get(); }
  const model::Tokenizer& tokenizer() const { return *tok_; }
  const RlhfOptions& options() const { return opts_; }

 private:
  struct Impl;
  bool lag() const { return opts_.algorithm == PpoAlgorithm::PpoLag; }
  // One micro-step of the actor (with the PTX batch when given) and of each critic.
  // An empty s (this rank's slice of the global micro-batch is empty) still joins the
  // collectives of the optimizer steps with zero gradients.
  // `scored`: the batch of the actor's and critics' last forward, when that was s's scoring
  // forward with the current weights: the micro-step then backpropagates from its activations
  // (its log-probs and values are s.logp_old, s.values_r and s.values_c).
  void train_micro(const ScoredRollout& s, const SftBatch* ptx, StepStats& acc,
                   int64_t& train_tokens, const DeviceBatch* scored = nullptr);
  // score() on a batch already uploaded (db: s.batch's tokens, targets: its targets i32 [B, S]).
  void score_on(ScoredRollout& s, const DeviceBatch& db, const Tensor& targets);
  // Generation of prompts whose first row is sequence `first_sequence` of the run; responses
  // get room up to --max_length after a prompt of `prompt_width` tokens (>= the longest).
  ScoredRollout rollout_at(const std::vector<std::vector<int32_t>>& prompts,
                           uint64_t first_sequence, int64_t prompt_width);
  // ZeRO stage 3 with --zero3_generation gathered: the full inference copy of the sharded
  // actor for one rollout (gathered, with its engine) and its release; no-ops otherwise (the
  // engine then serves the actor itself, sharded or not).
  bool gathered_generation() const;
  void open_generation();
  void close_generation();
  // The generation options of a rollout micro-batch whose longest prompt (over all ranks) has
  // P tokens and whose first row is sequence `first_sequence` of the run.
  model::GenerateOptions rollout_options(int64_t P, uint64_t first_sequence) const;
  // A rank whose slice of a global micro-batch is empty: joins the others' generation when it is
  // a collective (the sharded actor); nothing otherwise.
  void join_generation(const model::GenerateOptions& go);
  int ranks() const;
  int rank() const;
  bool root() const { return rank() == 0; }
  void save_actor(const std::string& dir) const;
  void report_constraint(const std::optional<ResolvedThreshold>& calibration,
                         const std::optional<ConstraintCheck>& check) const;
  // Costs of fresh responses of the actor to prompts_[indices[i]] (every rank joins; the result
  // is the same on all); stream separates the seeds of the calibration and the final check.
  std::vector<float> sample_costs(const std::vector<size_t>& indices, uint64_t stream);
  // n prompt indices: a seeded order of the prompt set of its own (stream), cycled when n
  // exceeds the prompts (the calibration's and the final check's samples).
  std::vector<size_t> cycled_order(size_t n, uint64_t stream) const;
  void draw_curves() const;
  nlohmann::json run_config() const;
  void save_state(const std::string& root, int64_t epoch, int64_t index,
                  int64_t metrics_lines) const;
  // False when root holds no checkpoint.
  bool load_state(const std::string& root, int64_t& epoch, int64_t& index,
                  int64_t& metrics_lines);

  Context* ctx_;
  RlhfOptions opts_;
  PpoConfig& cfg_ = opts_.ppo;
  std::unique_ptr<model::Tokenizer> tok_;
  int32_t eos_ = 2, pad_ = 0;
  std::unique_ptr<model::LlamaModel> actor_, ref_, rm_, cm_, critic_r_, critic_c_;
  std::unique_ptr<model::LlamaModel> gen_actor_;  // gathered generation: the full actor copy
  std::unique_ptr<model::InferenceEngine> engine_;  // over the actor, or over gen_actor_
  std::unique_ptr<LagrangeMultiplier> lagrange_;
  std::vector<std::vector<int32_t>> prompts_;
  std::unique_ptr<Impl> impl_;  // optimisers, PTX samples and loader
  int64_t global_step_ = 0;
  // Training micro-steps so far (update_iters × micro-batches per RL step): the reference's
  // global_step, which paces λ (one update per micro-step) and its delay.
  int64_t lambda_steps_ = 0;
  uint64_t sequences_sampled_ = 0;
  // PPO-Lag's constrained cost (--cost_unit) and its scale, resolved by the calibration (kept
  // in checkpoints); constrained_costs() turns the cost model's scores into it.
  CostUnit cost_unit_ = CostUnit::Score;
  double cost_scale_ = 1.0;
};

// Checks that a score model (or critic) folder can serve an actor: same vocabulary size, and
// the same tokenizer.model bytes when both folders carry one. `role` names it in the error.
// The panels of <output>/curves.png, read from a run's metrics.jsonl: λ, J_C against
// `threshold` and the cost critic's loss only for ppo-lag (the baselines have neither λ nor a
// cost critic); series that the file does not hold are left out.
std::vector<plot::Panel> rl_curve_panels(PpoAlgorithm algorithm, const std::string& metrics_jsonl,
                                         double threshold);

// The options of the actor's full inference copy under ZeRO stage 3 with --zero3_generation
// gathered (what a rollout then generates from): an LM head, the actor's batch and length, no
// gradients, no sharding.
model::LlamaOptions generation_copy_options(const model::LlamaOptions& actor);

void check_same_vocabulary(const std::string& actor_dir, const std::string& other_dir,
                           const std::string& role);

}  // namespace beaver::train
