// PPO-Lagrangian and its baselines over six LlamaModels (see rlhf.h for the step structure).
// The model-independent math (per-token rewards, GAE, losses, λ) lives in train/ppo.h; this
// file wires it to the models: generation, the gradient-free scoring passes, the gradient
// round trips (host loss gradients → token_logprobs_backward / scores_backward) and the
// optimiser steps.
#include "train/rlhf.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>

#include "csrc/atomic_file.h"
#include "csrc/error.h"
#include "csrc/log.h"
#include "csrc/ops/logprob.h"
#include "csrc/profile.h"
#include "csrc/timer.h"
#include "model/checkpoint.h"
#include "model/loader.h"
#include "train/metrics.h"
#include "train/batching.h"
#include "train/checkpoint_dir.h"
#include "train/memory_plan.h"
#include "train/distributed.h"
#include "train/optimizer.h"
#include "train/plot.h"
#include "train/schedule.h"
#include "train/trainer_state.h"
#include "train/zero.h"

namespace beaver::train {

namespace fs = std::filesystem;

PpoAlgorithm parse_ppo_algorithm(std::string_view s) {
  if (s == "ppo-lag") return PpoAlgorithm::PpoLag;
  if (s == "ppo") return PpoAlgorithm::Ppo;
  if (s == "ppo-shaping") return PpoAlgorithm::PpoRewardShaping;
  BEAVER_FAIL("unknown PPO algorithm '", s, "' (expected ppo-lag, ppo or ppo-shaping)");
}

std::string_view ppo_algorithm_name(PpoAlgorithm a) {
  switch (a) {
    case PpoAlgorithm::PpoLag: return "ppo-lag";
    case PpoAlgorithm::Ppo: return "ppo";
    case PpoAlgorithm::PpoRewardShaping: return "ppo-shaping";
  }
  return "?";
}

Zero3Generation parse_zero3_generation(std::string_view s) {
  if (s == "auto") return Zero3Generation::Auto;
  if (s == "sharded") return Zero3Generation::Sharded;
  if (s == "gathered") return Zero3Generation::Gathered;
  BEAVER_FAIL("--zero3_generation: expected auto, sharded or gathered, got '", s, "'");
}

std::string_view zero3_generation_name(Zero3Generation g) {
  switch (g) {
    case Zero3Generation::Auto: return "auto";
    case Zero3Generation::Sharded: return "sharded";
    case Zero3Generation::Gathered: return "gathered";
  }
  return "?";
}

std::vector<std::pair<std::string, double>> StepStats::metrics() const {
  return {{"lambda", lambda},
          {"episode_cost", episode_cost},
          {"reward", reward},
          {"cost", cost},
          {"kl", kl},
          {"response_length", response_length},
          {"eos_fraction", eos_fraction},
          {"actor_loss", actor_loss},
          {"ptx_loss", ptx_loss},
          {"reward_critic_loss", reward_critic_loss},
          {"cost_critic_loss", cost_critic_loss},
          {"actor_clip_fraction", actor_clip_fraction},
          {"approx_kl", approx_kl},
          {"reward_advantage", reward_advantage},
          {"reward_return", reward_return},
          {"reward_value", reward_value},
          {"cost_advantage", cost_advantage},
          {"cost_return", cost_return},
          {"cost_value", cost_value},
          {"actor_lr", actor_lr},
          {"actor_grad_norm", actor_grad_norm},
          {"critic_lr", critic_lr},
          {"skipped_steps", double(skipped_steps)},
          {"generation_s", generation_s},
          {"scoring_s", scoring_s},
          {"training_s", training_s},
          {"generation_tokens_per_s", generation_tokens_per_s},
          {"scoring_tokens_per_s", scoring_tokens_per_s},
          {"training_tokens_per_s", training_tokens_per_s}};
}

namespace {

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) BEAVER_IO_FAIL(p.string(), "cannot open");
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

// A model folder loaded into a fresh LlamaModel. `want_score_kind`: the folder must hold a
// trained score model (the frozen RM and CM: a fresh head would score at random). comm and
// zero_stage: the model's own ZeRO sharding (model/llama.h), as the stages build theirs:
// stage 2 shards a trained role's gradients (reduce-scattered unit by unit in the backward),
// stage 3 also the parameters of every role, trained or frozen.
std::unique_ptr<model::LlamaModel> load_model(Context& ctx, const std::string& dir,
                                              const std::string& role, model::Head head,
                                              int64_t max_batch, int64_t max_seq, bool training,
                                              bool recompute, bool want_score_kind,
                                              uint64_t seed, Communicator* comm, int zero_stage) {
  model::ModelKind kind{};
  const model::LlamaConfig cfg = model::checkpoint_config(dir, &kind);
  if (want_score_kind)
    BEAVER_CHECK(kind == model::ModelKind::ScoreModel, "the ", role, " at ", dir,
                 " is a causal LM, not a trained score model");
  if (head == model::Head::LM)
    BEAVER_CHECK(kind == model::ModelKind::CausalLM, "the ", role, " at ", dir,
                 " is a score model; it needs an LM head");
  model::LlamaOptions o;
  o.head = head;
  o.max_batch = max_batch;
  o.max_seq = max_seq;
  o.training = training;
  o.recompute = training && recompute;
  o.comm = comm;
  o.zero_stage = comm && comm->distributed() ? zero_stage : 0;
  auto m = std::make_unique<model::LlamaModel>(ctx, cfg, o);
  model::load_weights(*m, dir, seed);
  return m;
}

double mean_of(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += x;
  return v.empty() ? 0.0 : s / double(v.size());
}

}  // namespace

void check_same_vocabulary(const std::string& actor_dir, const std::string& other_dir,
                           const std::string& role) {
  const model::LlamaConfig a = model::checkpoint_config(actor_dir);
  const model::LlamaConfig o = model::checkpoint_config(other_dir);
  BEAVER_CHECK(a.vocab_size == o.vocab_size, "the ", role, " at ", other_dir, " has a vocabulary of ",
               o.vocab_size, " tokens but the actor at ", actor_dir, " has ", a.vocab_size,
               ": they must share one tokenizer");
  const fs::path ta = fs::path(actor_dir) / "tokenizer.model";
  const fs::path to = fs::path(other_dir) / "tokenizer.model";
  if (fs::exists(ta) && fs::exists(to))
    BEAVER_CHECK(read_bytes(ta) == read_bytes(to), "the ", role, " at ", other_dir,
                 " has a different tokenizer.model than the actor at ", actor_dir,
                 ": they must share one tokenizer");
}


// ---- Optimisers, PTX batches ---------------------------------------------------------------------
// The three optimisers (train/optimizer.h: AdamW with clipping and schedules, one step per
// micro-batch) and the PTX loader, which cycles through the SFT set in a fresh seeded order
// on every pass.
struct RlhfTrainer::Impl {
  Impl(RlhfTrainer& t, int64_t rl_steps, int64_t optimizer_steps, bool with_ptx)
      : tr(&t), rl_steps_(rl_steps) {
    const PpoConfig& c = t.cfg_;
    auto config = [&](double lr, double wd, const std::string& sched, double warmup,
                      int64_t total) {
      OptimizerConfig oc;
      oc.schedule.kind = parse_schedule(sched);
      oc.schedule.base_lr = lr;
      oc.schedule.warmup_ratio = warmup;
      oc.schedule.total_steps = std::max<int64_t>(1, total);
      oc.weight_decay = wd;
      oc.beta1 = float(c.adam_beta1);
      oc.beta2 = float(c.adam_beta2);
      oc.eps = float(c.adam_epsilon);
      oc.max_grad_norm = c.max_grad_norm;
      oc.accumulation = 1;  // the PTX backward joins the RL backward before the one step
      oc.comm = t.opts_.comm;
      oc.zero_stage = t.opts_.zero_stage;
      return oc;
    };
    // With PTX the reference doubles the actor's gradient accumulation (RL and PTX backward
    // are two micro-steps of one optimizer step) and its schedule length alike, while the
    // optimizer still steps once per RL micro-batch: its schedule is planned over twice the
    // steps it takes (a cosine ends half way down, at lr / 2).
    const OptimizerConfig actor_cfg =
        config(c.actor_lr, c.actor_weight_decay, c.actor_lr_scheduler_type,
               c.actor_lr_warmup_ratio, optimizer_steps * (with_ptx ? 2 : 1));
    const OptimizerConfig critic_cfg =
        config(c.critic_lr, c.critic_weight_decay, c.critic_lr_scheduler_type,
               c.critic_lr_warmup_ratio, optimizer_steps);
    actor_opt = std::make_unique<Optimizer>(*t.actor_, actor_cfg);
    critic_opt[0] = std::make_unique<Optimizer>(*t.critic_r_, critic_cfg);
    if (t.critic_c_) critic_opt[1] = std::make_unique<Optimizer>(*t.critic_c_, critic_cfg);
    const std::string algo(ppo_algorithm_name(t.opts_.algorithm));
    const char* roles[] = {" actor", " reward critic", " cost critic"};
    Optimizer* opts[] = {actor_opt.get(), critic_opt[0].get(), critic_opt[1].get()};
    for (int i = 0; i < 3; ++i) {
      if (!opts[i]) continue;
      guard[i] = std::make_unique<NonfiniteGuard>(algo + roles[i], t.opts_.nonfinite);
      opts[i]->set_guard(guard[i].get());
    }
    layout.max_length = c.max_length;
    layout.pad_id = t.pad_;
    layout.vocab_size = t.actor_->vocab_size();
    layout.device = t.ctx_->device();
    layout.context = t.ctx_;
  }

  int64_t rl_steps() const { return rl_steps_; }
  double actor_lr() const { return actor_opt->last_lr(); }
  double critic_lr() const { return critic_opt[0]->last_lr(); }
  void begin_actor() { tr->actor_->zero_grads(); }
  void step_actor() { actor_opt->micro_step(); }
  // What feeds each optimizer's step, checked before it is applied (train/nonfinite.h).
  // The rollout's means (any non-finite element makes its mean non-finite), the λ this very
  // micro-step uses (after its update), and the losses; the cost and λ only where they feed
  // the step (PPO logs a cost model's scores but does not train on them).
  void watch_actor(const StepStats& st, double loss) {
    NonfiniteGuard& g = *guard[0];
    g.observe("reward", st.reward);
    g.observe("reward_advantage", st.reward_advantage);
    if (tr->cm_ && tr->opts_.algorithm != PpoAlgorithm::Ppo) g.observe("cost", st.cost);
    if (tr->lag()) {
      g.observe("cost_advantage", st.cost_advantage);
      g.observe("lambda", tr->lagrange_->lambda());
    }
    g.observe("actor_loss", loss);
    if (!ptx.empty()) g.observe("ptx_loss", st.ptx_loss);
  }
  void watch_critic(int which, double loss, double mean_return) {
    guard[1 + which]->observe("critic_loss", loss);
    guard[1 + which]->observe("return", mean_return);
  }
  int64_t skipped() const {
    int64_t n = 0;
    for (const auto& g : guard) n += g ? g->skipped() : 0;
    return n;
  }
  double actor_grad_norm() const { return actor_opt->last_grad_norm(); }
  model::LlamaModel& critic(int which) { return which == 0 ? *tr->critic_r_ : *tr->critic_c_; }
  void begin_critic(int which) { critic(which).zero_grads(); }
  void step_critic(int which) { critic_opt[size_t(which)]->micro_step(); }

  // The next `rows` SFT samples of the PTX loader (a global micro-batch), of which this rank
  // keeps [begin, end), as one batch.
  SftBatch next_ptx_batch(int64_t rows, size_t begin, size_t end) {
    std::vector<SftSample> batch;
    while (int64_t(batch.size()) < rows) {
      if (ptx_pos >= ptx_order.size()) {
        ptx_order = shuffled_indices(ptx.size(), uint64_t(tr->cfg_.seed), 0x7058ull + ptx_cycle++);
        ptx_pos = 0;
      }
      batch.push_back(ptx[ptx_order[ptx_pos++]]);
    }
    if (begin >= end) return SftBatch{};  // nothing on this rank: the draw still advances
    return make_sft_batch(std::span<const SftSample>(batch).subspan(begin, end - begin), layout);
  }

  // Forward and backward of scale × ptx_coeff × the mean answer-token cross-entropy of b;
  // returns the cross-entropy, adds the batch's tokens to *tokens.
  double ptx_backward(const SftBatch& b, double scale, int64_t* tokens) {
    tr->actor_->forward(b.batch());
    const double ce = tr->actor_->cross_entropy(b.targets);
    tr->actor_->cross_entropy_backward(float(scale * tr->cfg_.ptx_coeff));
    *tokens += b.valid_tokens;
    return ce;
  }

  RlhfTrainer* tr;
  int64_t rl_steps_;
  std::unique_ptr<Optimizer> actor_opt, critic_opt[2];
  std::unique_ptr<NonfiniteGuard> guard[3];  // actor, reward critic, cost critic
  BatchLayout layout;
  std::vector<SftSample> ptx;
  std::vector<size_t> ptx_order;
  size_t ptx_pos = 0;
  uint64_t ptx_cycle = 0;
};

// ---- Construction ------------------------------------------------------------------------------
RlhfTrainer::RlhfTrainer(Context& ctx, const RlhfOptions& opts) : ctx_(&ctx), opts_(opts) {
  check_zero_stage(opts_.zero_stage);
  if (opts_.prompt_batch_size > 0) {
    BEAVER_CHECK(opts_.prompt_batch_size % ranks() == 0, "--prompt_batch_size ",
                 opts_.prompt_batch_size, " does not divide into ", ranks(),
                 " rank(s); choose a multiple of ", ranks());
    cfg_.per_device_prompt_batch_size = opts_.prompt_batch_size / ranks();
  }
  cfg_.validate();
  BEAVER_CHECK(cfg_.repetition_penalty == 1.0,
               "--repetition_penalty: only 1 (no penalty, the reference setting) is supported, got ",
               cfg_.repetition_penalty);
  BEAVER_CHECK(cfg_.num_return_sequences == 1,
               "--num_return_sequences: only 1 response per prompt is supported, got ",
               cfg_.num_return_sequences);
  BEAVER_CHECK(!opts_.actor_model.empty(), "train: --actor_model_name_or_path is required");
  BEAVER_CHECK(!opts_.reward_model.empty(), "train: --reward_model_name_or_path is required");
  BEAVER_CHECK(opts_.algorithm == PpoAlgorithm::Ppo || !opts_.cost_model.empty(), "train ",
               ppo_algorithm_name(opts_.algorithm), ": --cost_model_name_or_path is required");
  BEAVER_CHECK(!opts_.train_datasets.empty(), "train: --train_datasets is required");
  cost_unit_ = parse_cost_unit(cfg_.cost_unit);
  BEAVER_CHECK(lag() || cost_unit_ == CostUnit::Score, "train ", ppo_algorithm_name(opts_.algorithm),
               ": --cost_unit ", cfg_.cost_unit, " applies to ppo-lag's constraint only");
  if (opts_.reward_critic_model.empty()) opts_.reward_critic_model = opts_.reward_model;
  if (opts_.cost_critic_model.empty()) opts_.cost_critic_model = opts_.cost_model;

  // Every score model and critic must read the actor's tokens.
  check_same_vocabulary(opts_.actor_model, opts_.reward_model, "reward model");
  check_same_vocabulary(opts_.actor_model, opts_.reward_critic_model, "reward critic");
  if (!opts_.cost_model.empty()) check_same_vocabulary(opts_.actor_model, opts_.cost_model, "cost model");
  if (lag()) check_same_vocabulary(opts_.actor_model, opts_.cost_critic_model, "cost critic");

  tok_ = std::make_unique<model::Tokenizer>(load_policy_tokenizer(opts_.actor_model));
  eos_ = tok_->eos_id();
  pad_ = tok_->pad_id() >= 0 ? tok_->pad_id() : eos_;

  // Prompts (tokenised once; a prompt needs room for at least one response token).
  std::vector<ReadReport> reports;
  const auto prompts =
      load_prompt_mixture(opts_.train_datasets, uint64_t(cfg_.seed), {opts_.bad_records}, &reports);
  size_t too_long = 0;
  std::string first_too_long;
  for (const auto& p : prompts) {
    auto ids = encode_prompt(p.prompt);
    if (int64_t(ids.size()) >= cfg_.max_length) {
      if (too_long++ == 0) first_too_long = p.origin;
      continue;
    }
    prompts_.push_back(std::move(ids));
  }
  if (too_long > 0)
    log_warn("train: dropped ", too_long, " prompts with >= --max_length ", cfg_.max_length,
             " tokens (first at ", first_too_long, ")");
  BEAVER_CHECK(!prompts_.empty(), "train: no prompt of the training set fits --max_length ",
               cfg_.max_length);

  std::vector<SftExample> ptx;
  if (!opts_.ptx_datasets.empty())
    ptx = load_sft_mixture(opts_.ptx_datasets, uint64_t(cfg_.seed), {opts_.bad_records});
  BEAVER_CHECK(opts_.ptx_datasets.empty() || !ptx.empty(), "train: the PTX set is empty");

  // What stage-3 rollouts generate from (the same on every rank).
  if (opts_.zero3_generation == Zero3Generation::Auto) {
    std::string why;
    opts_.zero3_generation =
        resolve_zero3_generation(opts_, ctx.device(), ranks(), 0, &why, opts_.comm);
    if (root() && !why.empty()) log_info("train ", ppo_algorithm_name(opts_.algorithm), ": ", why);
  }

  // Six models. Micro-batches bound every batch (generation, scoring, training, PTX).
  const int64_t mb = rlhf_micro_batch(cfg_);
  const int64_t S = cfg_.max_length;
  const uint64_t seed = uint64_t(cfg_.seed);
  actor_ = load_model(ctx, opts_.actor_model, "actor", model::Head::LM, mb, S, true,
                      cfg_.actor_gradient_checkpointing, false, seed, opts_.comm,
                      opts_.zero_stage);
  ref_ = load_model(ctx, opts_.actor_model, "reference model", model::Head::LM, mb, S, false,
                    false, false, seed, opts_.comm, opts_.zero_stage);
  rm_ = load_model(ctx, opts_.reward_model, "reward model", model::Head::Score, mb, S, false,
                   false, true, seed, opts_.comm, opts_.zero_stage);
  if (!opts_.cost_model.empty())
    cm_ = load_model(ctx, opts_.cost_model, "cost model", model::Head::Score, mb, S, false, false,
                     true, seed, opts_.comm, opts_.zero_stage);
  critic_r_ = load_model(ctx, opts_.reward_critic_model, "reward critic", model::Head::Score, mb,
                         S, true, cfg_.critic_gradient_checkpointing, false, seed + 1,
                         opts_.comm, opts_.zero_stage);
  if (lag())
    critic_c_ = load_model(ctx, opts_.cost_critic_model, "cost critic", model::Head::Score, mb, S,
                           true, cfg_.critic_gradient_checkpointing, false, seed + 2,
                           opts_.comm, opts_.zero_stage);
  // The engine serves the actor itself (at stage 3 its sharded parameters, unit by unit: a
  // collective), unless a full copy is gathered per rollout (open_generation).
  if (!gathered_generation()) engine_ = std::make_unique<model::InferenceEngine>(*actor_, S);
  lagrange_ = std::make_unique<LagrangeMultiplier>(LagrangeMultiplier::options_from(cfg_));

  // Optimiser steps of the whole run, for the schedules.
  const int64_t global_prompts = cfg_.per_device_prompt_batch_size * ranks();
  const int64_t per_epoch = (int64_t(prompts_.size()) + global_prompts - 1) / global_prompts;
  // The schedules span the whole planned run; --max_steps only stops it early (so a run cut
  // short and resumed follows the same learning rates as an uninterrupted one).
  const int64_t planned = per_epoch * cfg_.epochs;
  const int64_t rl_steps = opts_.max_steps > 0 ? std::min(planned, opts_.max_steps) : planned;
  const int64_t micro_per_step = (cfg_.per_device_prompt_batch_size + mb - 1) / mb;
  impl_ = std::make_unique<Impl>(*this, rl_steps, planned * micro_per_step * cfg_.update_iters,
                                 !ptx.empty());
  // PTX samples with at least one answer token within max_length (a fully truncated answer
  // has nothing to learn from).
  size_t cut = 0;
  for (const auto& e : ptx) {
    SftSample smp = tokenize_sft(*tok_, e.prompt, e.answer, e.origin);
    if (smp.label_begin + 1 > std::min<int64_t>(int64_t(smp.ids.size()), cfg_.max_length)) {
      ++cut;
      continue;
    }
    impl_->ptx.push_back(std::move(smp));
  }
  if (cut > 0)
    log_warn("train: dropped ", cut, " PTX examples whose answer starts past --max_length ",
             cfg_.max_length);
  BEAVER_CHECK(ptx.empty() || !impl_->ptx.empty(), "train: no PTX example fits --max_length ",
               cfg_.max_length);
}

RlhfTrainer::~RlhfTrainer() = default;

int RlhfTrainer::ranks() const { return ranks_of(opts_.comm); }
int RlhfTrainer::rank() const { return rank_of(opts_.comm); }

std::vector<int32_t> RlhfTrainer::encode_prompt(const std::string& text) const {
  return tokenize_prompt(*tok_, text).ids;
}

int64_t RlhfTrainer::ptx_samples_drawn() const {
  if (impl_->ptx_cycle == 0) return 0;
  return int64_t((impl_->ptx_cycle - 1) * impl_->ptx.size() + impl_->ptx_pos);
}

std::string RlhfTrainer::decode(const std::vector<int32_t>& ids) const {
  return decode_response(*tok_, ids);
}

// ---- Generation copy (ZeRO stage 3, --zero3_generation gathered) -------------------------------
// With the actor's parameters sharded and gathered generation chosen, a rollout generates from
// a full inference copy of the actor (a hybrid engine, as DeepSpeed-Chat's): gathered unit by
// unit at the start of the rollout (a collective: every rank opens it at the same point), freed
// with its engine at the end. Its bytes are an item of the memory plan
// (train/memory_plan.cpp). Otherwise both calls do nothing: the engine runs on the actor.
bool RlhfTrainer::gathered_generation() const {
  return actor_->params_sharded() && opts_.zero3_generation == Zero3Generation::Gathered;
}

void RlhfTrainer::open_generation() {
  if (!gathered_generation() || gen_actor_) return;
  const ProfileRange range("rl/gather_actor");
  gen_actor_ = std::make_unique<model::LlamaModel>(*ctx_, actor_->config(),
                                                   generation_copy_options(actor_->options()));
  actor_->gather_into(*gen_actor_);
  engine_ = std::make_unique<model::InferenceEngine>(*gen_actor_, cfg_.max_length);
}

void RlhfTrainer::close_generation() {
  if (!gen_actor_) return;
  engine_.reset();
  gen_actor_.reset();
}

namespace {
// Runs f once: at run() or when the scope ends (also on an exception). Closes the generation
// copy.
class ScopeExit {
 public:
  explicit ScopeExit(std::function<void()> f) : f_(std::move(f)) {}
  ScopeExit(const ScopeExit&) = delete;
  ScopeExit& operator=(const ScopeExit&) = delete;
  ~ScopeExit() { run(); }
  void run() {
    if (!f_) return;
    const auto f = std::move(f_);
    f_ = nullptr;
    f();
  }

 private:
  std::function<void()> f_;
};
}  // namespace

model::LlamaOptions generation_copy_options(const model::LlamaOptions& actor) {
  model::LlamaOptions o;
  o.head = model::Head::LM;
  o.max_batch = actor.max_batch;
  o.max_seq = actor.max_seq;
  o.training = false;
  return o;
}

// ---- Rollout -----------------------------------------------------------------------------------
ScoredRollout RlhfTrainer::rollout(const std::vector<std::vector<int32_t>>& prompts) {
  open_generation();
  ScopeExit generation([this] { close_generation(); });
  int64_t P = 0;
  for (const auto& p : prompts) P = std::max<int64_t>(P, int64_t(p.size()));
  const uint64_t first = sequences_sampled_;
  sequences_sampled_ += prompts.size();
  return rollout_at(prompts, first, P);
}

model::GenerateOptions RlhfTrainer::rollout_options(int64_t P, uint64_t first_sequence) const {
  model::GenerateOptions go;
  go.sampling = ops::SamplingConfig{float(cfg_.temperature), 0, float(cfg_.top_p)};
  BEAVER_CHECK(P < cfg_.max_length, "rollout: a prompt of ", P,
               " tokens leaves no room for a response within --max_length ", cfg_.max_length);
  go.max_new_tokens = cfg_.max_length - P;
  go.eos_id = eos_;
  go.pad_id = pad_;
  // Each sampled sequence gets its own seed: (run seed, sequence number) never repeats.
  go.seed = uint64_t(cfg_.seed) * 0x9E3779B97F4A7C15ull + first_sequence;
  return go;
}

void RlhfTrainer::join_generation(const model::GenerateOptions& go) {
  if (!engine_->collective()) return;
  const ProfileRange range("rl/generate");
  engine_->generate({}, go);
}

ScoredRollout RlhfTrainer::rollout_at(const std::vector<std::vector<int32_t>>& prompts,
                                      uint64_t first_sequence, int64_t P) {
  for (const auto& p : prompts) P = std::max<int64_t>(P, int64_t(p.size()));
  const model::GenerateOptions go = rollout_options(P, first_sequence);
  const auto gens = [&] {
    const ProfileRange range("rl/generate");
    return engine_->generate(prompts, go);
  }();
  ScoredRollout s;
  s.batch = build_rollout(prompts, gens, eos_, pad_);
  std::vector<int32_t> special;
  if (tok_->unk_id() >= 0) special.push_back(tok_->unk_id());
  if (pad_ != eos_) special.push_back(pad_);
  mask_special_actions(s.batch, special);
  return s;
}

void RlhfTrainer::score(ScoredRollout& s) {
  const DeviceBatch db = upload(*ctx_, s.batch);
  const OwnedTensor targets = to_device(*ctx_, s.batch.targets, {s.batch.batch, s.batch.width});
  score_on(s, db, targets);
}

void RlhfTrainer::score_on(ScoredRollout& s, const DeviceBatch& db, const Tensor& targets) {
  const ProfileRange range("rl/score");
  const RolloutBatch& r = s.batch;
  const TokenDims d = r.dims();
  const model::Batch b = db.batch();
  s.logp_old = rollout_logprobs(*actor_, b, targets);
  s.ref_logp = rollout_logprobs(*ref_, b, targets);
  s.reward = rollout_end_scores(*rm_, b);
  if (cm_) s.cost = rollout_end_scores(*cm_, b);
  s.values_r = rollout_values(*critic_r_, b);
  const double clip = cfg_.clip_range_score;
  switch (opts_.algorithm) {
    case PpoAlgorithm::PpoLag:
      // The constrained cost (--cost_unit) is what λ's window, the cost critic and the actor's
      // cost channel all see.
      s.cost = constrained_costs(s.cost, cost_unit_, cost_scale_);
      s.values_c = rollout_values(*critic_c_, b);
      s.rewards = kl_penalized_rewards(d, s.logp_old, s.ref_logp, r.mask, s.reward,
                                       cfg_.kl_coeff, clip);
      s.costs = kl_penalized_costs(d, s.logp_old, s.ref_logp, r.mask, s.cost, cfg_.kl_coeff, clip);
      s.gae_c = compute_gae(d, s.costs, s.values_c, r.mask, cfg_.gamma, cfg_.gae_lambda);
      break;
    case PpoAlgorithm::Ppo:
      s.rewards = kl_penalized_rewards(d, s.logp_old, s.ref_logp, r.mask, s.reward,
                                       cfg_.kl_coeff, clip);
      break;
    case PpoAlgorithm::PpoRewardShaping: {
      const auto shaped = shaped_scores(s.reward, s.cost, cfg_.shaping_nu);
      s.rewards = kl_penalized_rewards(d, s.logp_old, s.ref_logp, r.mask, shaped, cfg_.kl_coeff,
                                       clip);
      break;
    }
  }
  s.gae_r = compute_gae(d, s.rewards, s.values_r, r.mask, cfg_.gamma, cfg_.gae_lambda);
}

// ---- The requirement ---------------------------------------------------------------------------
std::vector<float> RlhfTrainer::sample_costs(const std::vector<size_t>& indices, uint64_t stream) {
  const size_t n = indices.size();
  // On several ranks each takes its slice of every global micro-batch (as in step()); the
  // costs are gathered in global order, so every rank holds the same costs.
  const size_t mb = size_t(actor_->options().max_batch);
  const size_t gmb = mb * size_t(ranks());
  std::vector<double> global_costs(n, 0.0);
  model::GenerateOptions go;
  go.sampling = ops::SamplingConfig{float(cfg_.temperature), 0, float(cfg_.top_p)};
  go.eos_id = eos_;
  go.pad_id = pad_;
  open_generation();
  ScopeExit generation([this] { close_generation(); });
  for (size_t i = 0; i < n; i += gmb) {
    const size_t gend = std::min(n, i + gmb);
    int64_t P = 0;
    for (size_t j = i; j < gend; ++j) P = std::max<int64_t>(P, int64_t(prompts_[indices[j]].size()));
    const auto [b, e] = rank_slice(i, gend, mb, rank());
    go.max_new_tokens = cfg_.max_length - P;
    go.seed = (uint64_t(cfg_.seed) ^ stream) * 0x9E3779B97F4A7C15ull + b;
    if (b >= e) {
      join_generation(go);             // sharded actor: the others' decode steps gather
      join_sharded_pass(*cm_, false);  // stage 3: the others' scoring is a collective
      continue;
    }
    std::vector<std::vector<int32_t>> part;
    for (size_t j = b; j < e; ++j) part.push_back(prompts_[indices[j]]);
    const RolloutBatch r = build_rollout(part, engine_->generate(part, go), eos_, pad_);
    const auto c = rollout_end_scores(*cm_, r);
    for (size_t j = 0; j < c.size(); ++j) global_costs[b + j] = double(c[j]);
  }
  // Each entry is set on one rank and 0 on the others: the sum is exact.
  if (ranks() > 1) opts_.comm->all_reduce(global_costs, ReduceOp::Sum);
  return std::vector<float>(global_costs.begin(), global_costs.end());
}

std::vector<size_t> RlhfTrainer::cycled_order(size_t n, uint64_t stream) const {
  const auto order = shuffled_indices(prompts_.size(), uint64_t(cfg_.seed), stream);
  std::vector<size_t> indices(n);
  for (size_t i = 0; i < n; ++i) indices[i] = order[i % order.size()];
  return indices;
}

ResolvedThreshold RlhfTrainer::calibrate_threshold() {
  BEAVER_CHECK(lag() && cm_, "calibrate_threshold: needs ppo-lag and a cost model");
  BEAVER_CHECK(cfg_.target_unsafe_share >= 0 || cfg_.target_unsafe_ratio >= 0,
               "calibrate_threshold: neither --target_unsafe_share nor --target_unsafe_ratio is set");
  const std::vector<float> costs =
      sample_costs(cycled_order(size_t(cfg_.calibration_prompts), 0xCA1Bull), 0xCA1B0000ull);
  const bool probability = cost_unit_ == CostUnit::UnsafeProbability;
  const ResolvedThreshold t =
      probability ? resolve_probability_threshold(costs, cfg_.target_unsafe_share,
                                                  cfg_.target_unsafe_ratio)
      : cfg_.target_unsafe_ratio >= 0 ? resolve_threshold_relative(costs, cfg_.target_unsafe_ratio)
                                      : resolve_threshold(costs, cfg_.target_unsafe_share);
  lagrange_->set_threshold(t.threshold);
  cost_scale_ = t.cost_scale;
  if (root()) log_info("train ppo-lag: threshold ", t.threshold, " resolved for a target unsafe share of ",
           t.target_unsafe_share,
           t.target_unsafe_ratio >= 0
               ? cat(" (", t.target_unsafe_ratio, " x the starting ",
                     probability ? "mean probability of unsafe" : "share", ")")
               : std::string(),
           " from ", t.responses, " responses of the starting policy (",
           "unsafe share ", t.unsafe_share, ", mean cost ", t.mean_cost, ": ", t.mean_unsafe,
           " unsafe, ", t.mean_safe, " safe",
           probability ? cat("; mean probability of unsafe ", t.unsafe_probability,
                             "; the constrained cost is ", t.cost_scale,
                             " x the cost model's probability of unsafe")
                       : std::string(),
           ")",
           cfg_.cost_confidence > 0
               ? cat("; lambda follows the mean cost plus ", cfg_.cost_confidence,
                     " standard errors of the ", cfg_.episode_cost_window_size,
                     "-response window")
               : std::string());
  return t;
}

RlhfTrainer::ConstraintCheck RlhfTrainer::check_constraint() {
  BEAVER_CHECK(lag() && cm_, "check_constraint: needs ppo-lag and a cost model");
  BEAVER_CHECK(cfg_.constraint_check_responses > 0,
               "check_constraint: --constraint_check_responses is 0");
  const std::vector<float> scores =
      sample_costs(cycled_order(size_t(cfg_.constraint_check_responses), 0xC4ECull), 0xC4EC0000ull);
  const std::vector<float> costs = constrained_costs(scores, cost_unit_, cost_scale_);
  const std::vector<float> probability =
      constrained_costs(scores, CostUnit::UnsafeProbability, 1.0);
  ConstraintCheck c;
  c.responses = int64_t(costs.size());
  double sum = 0, unsafe = 0, p = 0;
  for (size_t i = 0; i < costs.size(); ++i) {
    BEAVER_CHECK(std::isfinite(costs[i]), "check_constraint: the cost of check response ", i,
                 " is not finite");
    sum += costs[i];
    unsafe += scores[i] > 0 ? 1.0 : 0.0;
    p += probability[i];
  }
  const double n = double(costs.size());
  c.mean_cost = sum / n;
  c.unsafe_share = unsafe / n;
  c.unsafe_probability = p / n;
  c.standard_error = standard_error_of_mean(costs, c.mean_cost);
  c.threshold = lagrange_->options().threshold;
  c.upper_bound = c.mean_cost + cfg_.cost_confidence * c.standard_error;
  // Met: the plain mean of the fresh costs against the threshold (the reference's constraint,
  // on the final policy alone); the upper bound is reported beside it.
  c.met = c.mean_cost <= c.threshold;
  return c;
}

// ---- One RL step -------------------------------------------------------------------------------
StepStats RlhfTrainer::step(const std::vector<std::vector<int32_t>>& prompts) {
  const ProfileRange range("rl/step");
  BEAVER_CHECK(!prompts.empty(), "RlhfTrainer::step: no prompts");
  BEAVER_CHECK(int64_t(prompts.size()) <= cfg_.per_device_prompt_batch_size * ranks(),
               "RlhfTrainer::step: ", prompts.size(), " prompts exceed --per_device_prompt_batch_size ",
               cfg_.per_device_prompt_batch_size, " x ", ranks(), " rank(s)");
  const size_t mb = size_t(actor_->options().max_batch);
  const size_t gmb = mb * size_t(ranks());  // the global micro-batch
  StepStats st;
  st.step = global_step_ + 1;  // the update this step makes, counted from 1

  // 1. Generation, one micro-batch at a time: this rank's slice of each global micro-batch
  // (possibly empty at the tail), with the seeds of its global indices and room for responses
  // after the global micro-batch's longest prompt.
  std::vector<ScoredRollout> micro;
  std::vector<size_t> micro_first;   // global index of each micro-batch's first row
  std::vector<size_t> micro_global;  // rows of the global micro-batch
  const uint64_t first_sequence = sequences_sampled_;
  sequences_sampled_ += prompts.size();
  int64_t gen_tokens = 0, seq_tokens = 0;
  // Stage 3: a rank whose slice is empty joins every scoring pass of the others, in score_on()'s
  // order (each is a collective of the model's units).
  const auto join_scoring = [&] {
    for (model::LlamaModel* m : {actor_.get(), ref_.get(), rm_.get(), cm_.get(), critic_r_.get(),
                                 lag() ? critic_c_.get() : nullptr})
      if (m) join_sharded_pass(*m, false);
  };
  {
    Timer tg;  // gathered generation: the copy's gather is generation time
    open_generation();
    ctx_->synchronize();
    st.generation_s += tg.elapsed_s();
  }
  ScopeExit generation([this] { close_generation(); });
  for (size_t g = 0; g < prompts.size(); g += gmb) {
    const size_t gend = std::min(prompts.size(), g + gmb);
    int64_t P = 0;
    for (size_t j = g; j < gend; ++j) P = std::max<int64_t>(P, int64_t(prompts[j].size()));
    const auto [b, e] = rank_slice(g, gend, mb, rank());
    micro_first.push_back(b);
    micro_global.push_back(gend - g);
    Timer tg;
    if (b >= e) {
      join_generation(rollout_options(P, first_sequence + b));  // the sharded actor's gathers
      st.generation_s += tg.elapsed_s();
      micro.emplace_back();  // joins the others' scoring passes below
      continue;
    }
    const std::vector<std::vector<int32_t>> part(prompts.begin() + long(b),
                                                 prompts.begin() + long(e));
    micro.push_back(rollout_at(part, first_sequence + b, P));
    ctx_->synchronize();
    st.generation_s += tg.elapsed_s();
    gen_tokens += micro.back().batch.action_count();
    seq_tokens += micro.back().batch.sequence_tokens();
  }
  generation.run();  // the generation copy is freed before the scoring and training passes

  // 2. Scoring, last micro-batch first: the actor's and critics' last forward is then the one
  // over micro-batch 0, whose activations the first training micro-step reuses (its batch
  // stays uploaded for that backward). Each micro-batch's scores are the same in any order.
  // Not at ZeRO stage 3: there a forward gathers the model's units (collectives), and a rank
  // whose micro-batch-0 slice is empty joins the first micro-step with a full pass, so every
  // rank must run that forward alike.
  const bool reuse = opts_.reuse_scoring_forward && !actor_->params_sharded() && !micro.empty() &&
                     micro[0].batch.batch > 0;
  std::optional<DeviceBatch> scored;
  for (size_t m = micro.size(); m-- > 0;) {
    ScoredRollout& s = micro[m];
    if (s.batch.batch == 0) {
      join_scoring();
      continue;
    }
    Timer ts;
    std::optional<DeviceBatch> local;
    DeviceBatch& db = (m == 0 && reuse ? scored : local).emplace(upload(*ctx_, s.batch));
    const OwnedTensor targets = to_device(*ctx_, s.batch.targets, {s.batch.batch, s.batch.width});
    score_on(s, db, targets);
    ctx_->synchronize();
    st.scoring_s += ts.elapsed_s();
  }

  // Rollout statistics (per sequence, then averaged over the whole step).
  std::vector<float> all_rewards, all_costs;
  std::vector<double> global_costs(prompts.size(), 0.0);
  double kl_sum = 0, len_sum = 0, eos = 0;
  double adv_r = 0, ret_r = 0, val_r = 0, adv_c = 0, ret_c = 0, val_c = 0;
  for (const auto& s : micro) {
    const RolloutBatch& r = s.batch;
    if (r.batch == 0) continue;  // this rank's slice of a tail micro-batch is empty
    const TokenDims d = r.dims();
    all_rewards.insert(all_rewards.end(), s.reward.begin(), s.reward.end());
    all_costs.insert(all_costs.end(), s.cost.begin(), s.cost.end());
    for (size_t j = 0; j < s.cost.size(); ++j)
      global_costs[micro_first[size_t(&s - micro.data())] + j] = double(s.cost[j]);
    for (int64_t b = 0; b < r.batch; ++b) {
      double kl = 0;
      for (int64_t t = 0; t < r.width; ++t) {
        const size_t k = size_t(b * r.width + t);
        if (r.mask[k]) kl += double(s.logp_old[k]) - double(s.ref_logp[k]);
      }
      kl_sum += kl;
      len_sum += double(r.response_len[size_t(b)]);
      eos += r.stopped_at_eos[size_t(b)] ? 1.0 : 0.0;
    }
    // Masked means weighted by rows, so micro-batches of different sizes average correctly.
    const double w = double(r.batch);
    adv_r += w * masked_mean(d, s.gae_r.advantages, r.mask);
    ret_r += w * masked_mean(d, s.gae_r.returns, r.mask);
    val_r += w * masked_mean(d, s.values_r, r.mask);
    if (lag()) {
      adv_c += w * masked_mean(d, s.gae_c.advantages, r.mask);
      ret_c += w * masked_mean(d, s.gae_c.returns, r.mask);
      val_c += w * masked_mean(d, s.values_c, r.mask);
    }
  }
  const double n = double(all_rewards.size());
  // A rank with no rows (an empty tail slice) joins the reduction below with weight 0.
  auto per = [n](double x) { return n > 0 ? x / n : 0.0; };
  st.reward = mean_of(all_rewards);
  st.cost = mean_of(all_costs);
  st.kl = per(kl_sum);
  st.response_length = per(len_sum);
  st.eos_fraction = per(eos);
  st.reward_advantage = per(adv_r);
  st.reward_return = per(ret_r);
  st.reward_value = per(val_r);
  st.cost_advantage = per(adv_c);
  st.cost_return = per(ret_c);
  st.cost_value = per(val_c);
  if (ranks() > 1) {
    // Means over every rank's sequences; token counts summed.
    std::vector<std::pair<std::string, double>> means = {
        {"reward", st.reward}, {"cost", st.cost}, {"kl", st.kl},
        {"len", st.response_length}, {"eos", st.eos_fraction},
        {"adv_r", st.reward_advantage}, {"ret_r", st.reward_return},
        {"val_r", st.reward_value}, {"adv_c", st.cost_advantage},
        {"ret_c", st.cost_return}, {"val_c", st.cost_value}};
    std::vector<double> sums = {double(gen_tokens), double(seq_tokens)};
    reduce_weighted(opts_.comm, means, n, sums);
    double* fields[] = {&st.reward, &st.cost, &st.kl, &st.response_length, &st.eos_fraction,
                        &st.reward_advantage, &st.reward_return, &st.reward_value,
                        &st.cost_advantage, &st.cost_return, &st.cost_value};
    for (size_t i = 0; i < means.size(); ++i) *fields[i] = means[i].second;
    gen_tokens = int64_t(sums[0]);
    seq_tokens = int64_t(sums[1]);
    // Every rank's costs in global order (each entry set on one rank, 0 elsewhere: exact).
    if (cm_) {
      opts_.comm->all_reduce(global_costs, ReduceOp::Sum);
      all_costs.assign(global_costs.begin(), global_costs.end());
    }
  }

  // 3. λ: the step's episode costs (of every rank) enter the window. As in the reference, λ
  // then takes one SGD step before every training micro-step (below), and its delay counts
  // those micro-steps. A non-finite cost leaves λ as it was: it stays out of the window (λ
  // would never recover from it) and λ takes none of this step's updates; the actor's guard
  // sees it in st.cost and stops the run or skips this step's actor updates
  // (train/nonfinite.h). The costs are global here, so every rank decides alike.
  const bool costs_finite =
      std::all_of(all_costs.begin(), all_costs.end(), [](float c) { return std::isfinite(c); });
  if (!all_costs.empty() && costs_finite) lagrange_->add_episode_costs(all_costs);
  if (lagrange_->window_count() > 0) st.episode_cost = lagrange_->window_mean();

  // 4. Training: update_iters passes over the micro-batches. The PTX batch of this step (one
  // SFT batch per rollout micro-batch) is drawn once and reused by every pass, as the
  // reference's loop reuses its PTX micro-batches across PPO epochs.
  Timer tt;
  int64_t train_tokens = 0;
  int64_t micro_steps = 0;
  std::vector<SftBatch> ptx_batches;
  if (!impl_->ptx.empty())
    for (size_t m = 0; m < micro.size(); ++m) {
      // The global micro-batch's PTX rows, of which this rank keeps the slice of its rollout.
      const size_t begin = micro_first[m] - m * gmb;
      ptx_batches.push_back(impl_->next_ptx_batch(int64_t(micro_global[m]), begin,
                                                  begin + size_t(micro[m].batch.batch)));
    }
  for (int64_t it = 0; it < cfg_.update_iters; ++it)
    for (size_t m = 0; m < micro.size(); ++m) {
      if (lag() && costs_finite) {
        const auto u = lagrange_->update(lambda_steps_);
        if (u.applied) {
          st.lambda_updated = true;
          st.episode_cost = u.episode_cost;
        }
      }
      ++lambda_steps_;
      // Only the very first micro-step: every later one follows an optimizer step.
      const DeviceBatch* reused = it == 0 && m == 0 && scored ? &*scored : nullptr;
      train_micro(micro[m], ptx_batches.empty() ? nullptr : &ptx_batches[m], st, train_tokens,
                  reused);
      ++micro_steps;
    }
  st.lambda = lagrange_->lambda();
  ctx_->synchronize();
  st.training_s = tt.elapsed_s();
  if (ranks() > 1) {
    std::vector<double> tokens = {double(train_tokens)};
    opts_.comm->all_reduce(tokens, ReduceOp::Sum);
    train_tokens = int64_t(tokens[0]);
  }
  const double k = double(micro_steps);
  st.actor_loss /= k;
  st.ptx_loss /= k;
  st.reward_critic_loss /= k;
  st.cost_critic_loss /= k;
  st.actor_clip_fraction /= k;
  st.approx_kl /= k;
  st.actor_grad_norm /= k;
  st.actor_lr = impl_->actor_lr();
  st.critic_lr = impl_->critic_lr();
  st.skipped_steps = impl_->skipped();

  auto rate = [](double tokens, double s) { return s > 0 ? tokens / s : 0.0; };
  st.generation_tokens_per_s = rate(double(gen_tokens), st.generation_s);
  st.scoring_tokens_per_s = rate(double(seq_tokens), st.scoring_s);
  st.training_tokens_per_s = rate(double(train_tokens), st.training_s);
  ++global_step_;
  return st;
}

void RlhfTrainer::train_micro(const ScoredRollout& s, const SftBatch* ptx, StepStats& st,
                              int64_t& train_tokens, const DeviceBatch* scored) {
  const RolloutBatch& r = s.batch;
  const TokenDims d = r.dims();
  const Device dev = ctx_->device();
  const bool empty = r.batch == 0;  // nothing on this rank: zero gradients into the steps
  std::optional<DeviceBatch> db;
  if (!empty && !scored) db.emplace(upload(*ctx_, r));
  // Each rank's losses are means over its rows (tokens for PTX); scaled by the rank's share
  // of the global rows, the rank average of the gradients is the one-rank gradient of the
  // global micro-batch (data_parallel_share: 1 on one rank).
  const double share = data_parallel_share(opts_.comm, double(r.batch));

  // Actor: PPO-clip on the rollout, then the PTX batch into the same optimiser step. With PTX
  // the reference accumulates the two backward passes as two micro-steps of one step, each
  // scaled by 1/2: the clipped gradient is (g_RL + ptx_coeff·g_PTX) / 2.
  const double half = ptx ? 0.5 : 1.0;
  ProfileRange actor_range("rl/actor_update");
  impl_->begin_actor();
  std::vector<double> none;
  if (lag() && !std::isfinite(lagrange_->lambda())) {
    // λ overflowed in its update: no actor loss can be formed with it. The guard names λ
    // (stop) or drops the actor's step (skip); the critics still take theirs. λ is the same
    // on every rank, so every rank takes this branch alike.
    impl_->watch_actor(st, std::numeric_limits<double>::quiet_NaN());
    impl_->step_actor();
  } else {
    std::vector<std::pair<std::string, double>> means = {
        {"actor_loss", 0}, {"clip", 0}, {"approx_kl", 0}, {"ptx_loss", 0}};
    if (!empty) {
      // Reused: the scoring forward was this one (same weights and inputs), its log-probs
      // s.logp_old and its activations still in the actor.
      const auto logp_new = scored ? s.logp_old : [&] {
        const OwnedTensor targets = to_device(*ctx_, r.targets, {r.batch, r.width});
        return rollout_logprobs(*actor_, db->batch(), targets);
      }();
      const ActorLoss al =
          lag() ? ppo_lag_actor_loss(d, logp_new, s.logp_old, s.gae_r.advantages,
                                     s.gae_c.advantages, r.mask, lagrange_->lambda(),
                                     cfg_.clip_range_ratio)
                : actor_loss(d, logp_new, s.logp_old, s.gae_r.advantages, r.mask,
                             cfg_.clip_range_ratio);
      std::vector<float> grad = al.grad_logp;
      const double scale = half * share;
      if (scale != 1.0)
        for (float& g : grad) g = float(double(g) * scale);
      const OwnedTensor dlogp = to_device(*ctx_, grad, {r.batch, r.width});
      actor_->token_logprobs_backward(dlogp);
      means[0].second = al.loss;
      means[1].second = al.clip_fraction;
      means[2].second = al.approx_kl;
      train_tokens += r.sequence_tokens();
    } else {
      join_sharded_pass(*actor_, true);  // the other ranks' backward is a collective (ZeRO 2-3)
    }
    if (ptx) {
      const bool have = ptx->rows > 0;
      const double ptx_share = data_parallel_share(opts_.comm, have ? double(ptx->label_tokens) : 0.0);
      if (have) {
        int64_t tokens = 0;
        means[3].second = impl_->ptx_backward(*ptx, half * ptx_share, &tokens);
        train_tokens += tokens;
      } else {
        join_sharded_pass(*actor_, true);
      }
    }
    reduce_weighted(opts_.comm, means, double(r.batch), none);
    st.actor_loss += means[0].second;
    st.actor_clip_fraction += means[1].second;
    st.approx_kl += means[2].second;
    st.ptx_loss += means[3].second;
    impl_->watch_actor(st, means[0].second);
    impl_->step_actor();
    st.actor_grad_norm += impl_->actor_grad_norm();
  }
  actor_range.end();

  // Critics: clipped value loss against their own returns.
  auto critic = [&](model::LlamaModel& m, int which, const std::vector<float>& values_old,
                    const Gae& g) {
    const ProfileRange range(which == 0 ? "rl/reward_critic_update"
                                        : "rl/cost_critic_update");
    impl_->begin_critic(which);
    std::vector<std::pair<std::string, double>> loss = {{"critic_loss", 0}};
    if (!empty) {
      const auto vn = scored ? values_old : [&] {
        m.forward(db->batch());
        OwnedTensor v(DType::F32, {r.batch, r.width}, dev);
        m.scores(v, Tensor());
        return to_host_f32(v);
      }();
      CriticLoss cl = critic_loss(d, vn, values_old, g.returns, r.mask, cfg_.clip_range_value);
      if (share != 1.0)
        for (float& x : cl.grad_values) x = float(double(x) * share);
      const OwnedTensor dv = to_device(*ctx_, cl.grad_values, {r.batch, r.width});
      m.scores_backward(dv, Tensor());
      loss[0].second = cl.loss;
      train_tokens += r.sequence_tokens();
    } else {
      join_sharded_pass(m, true);
    }
    reduce_weighted(opts_.comm, loss, double(r.batch), none);
    impl_->watch_critic(which, loss[0].second, which == 0 ? st.reward_return : st.cost_return);
    impl_->step_critic(which);
    return loss[0].second;
  };
  st.reward_critic_loss += critic(*critic_r_, 0, s.values_r, s.gae_r);
  if (lag()) st.cost_critic_loss += critic(*critic_c_, 1, s.values_c, s.gae_c);
}

// ---- The run -----------------------------------------------------------------------------------
void RlhfTrainer::train() {
  // The global prompt batch: every rank walks the same seeded order and step() slices it.
  const int64_t Pb = cfg_.per_device_prompt_batch_size * ranks();
  const int64_t total = impl_->rl_steps();
  const bool write = !opts_.output_dir.empty();
  const fs::path out(opts_.output_dir);
  const std::string ckpt_root = (out / "checkpoints").string();
  // Only rank 0 writes the records, curves and models (the others keep records in memory).
  const std::string metrics_path = write && root() ? (out / "metrics.jsonl").string() : "";
  int64_t epoch0 = 0, index0 = 0;
  bool resumed = false;
  if (write) {
    if (root()) fs::create_directories(out);
    if (opts_.comm) opts_.comm->barrier();
    const bool has_ckpt = !latest_checkpoint(ckpt_root).empty();
    if (opts_.resume && !has_ckpt)
      BEAVER_FAIL("train ", ppo_algorithm_name(opts_.algorithm), " --resume: nothing to resume, ",
                  ckpt_root, " holds no checkpoint; run without --resume to start afresh");
    BEAVER_CHECK(opts_.resume || !has_ckpt, opts_.output_dir,
                 ": holds checkpoints of an earlier run; pass --resume to continue it or choose "
                 "another --output_dir");
    BEAVER_CHECK(opts_.resume || !fs::exists(out / "beaver.json"), opts_.output_dir,
                 ": holds a trained model already; choose another --output_dir");
    int64_t lines = 0;
    if (opts_.resume) {
      BEAVER_CHECK(load_state(ckpt_root, epoch0, index0, lines), "train ",
                   ppo_algorithm_name(opts_.algorithm), " --resume: no usable checkpoint in ",
                   ckpt_root);
      if (root()) truncate_lines(metrics_path, lines);
      resumed = true;
    }
    if (!resumed && root()) truncate_lines(metrics_path, 0);
    if (opts_.comm) opts_.comm->barrier();  // no rank reads the output folder after this
  }
  std::optional<ResolvedThreshold> calibration;
  if (lag() && (cfg_.target_unsafe_share >= 0 || cfg_.target_unsafe_ratio >= 0) && !resumed)
    calibration = calibrate_threshold();
  MetricsLog log(metrics_path, total);
  if (root()) log_info("train ", ppo_algorithm_name(opts_.algorithm), ": ", prompts_.size(),
           " distinct prompts (repeated texts dropped), ", total, " RL steps of ", Pb, " prompts",
           ranks() > 1 ? cat(" (", ranks(), " ranks x ", cfg_.per_device_prompt_batch_size,
                             ", zero stage ", opts_.zero_stage,
                             actor_->params_sharded()
                                 ? cat(", generation ", zero3_generation_name(opts_.zero3_generation))
                                 : std::string(),
                             ")")
                       : "",
           impl_->ptx.empty() ? "" : cat(", PTX on ",
           impl_->ptx.size(), " SFT examples"), resumed ? cat(", resumed at step ", global_step_) : "");
  int64_t saved_at = resumed ? global_step_ : -1;
  // (epoch, index) is always the position of the next prompt batch.
  int64_t epoch = epoch0, index = index0;
  int interrupted = 0;  // the signal that stopped the run early (0: none)
  while (epoch < cfg_.epochs && global_step_ < total && interrupted == 0) {
    const auto order = shuffled_indices(prompts_.size(), uint64_t(cfg_.seed), uint64_t(epoch));
    std::vector<std::vector<int32_t>> batch;
    for (int64_t j = index; j < std::min<int64_t>(int64_t(order.size()), index + Pb); ++j)
      batch.push_back(prompts_[order[size_t(j)]]);
    index += Pb;
    if (index >= int64_t(order.size())) {
      ++epoch;
      index = 0;
    }
    const StepStats st = step(batch);
    log.record(st.step, st.metrics());
    const double secs = st.generation_s + st.scoring_s + st.training_s;
    const double tps = secs > 0 ? double(batch.size()) * st.response_length / secs : 0.0;
    if (root()) log_info(log.progress_line(global_step_,
                               {{"lambda", st.lambda},
                                {"J_C", st.episode_cost},
                                {"R", st.reward},
                                {"C", st.cost},
                                {"kl", st.kl},
                                {"len", st.response_length},
                                {"gen_s", st.generation_s},
                                {"score_s", st.scoring_s},
                                {"train_s", st.training_s}},
                               tps));
    if (opts_.plot_steps > 0 && global_step_ % opts_.plot_steps == 0 && root()) draw_curves();
    if (write && opts_.save_interval > 0 && global_step_ % opts_.save_interval == 0) {
      save_state(ckpt_root, epoch, index, root() ? count_lines(metrics_path) : 0);
      saved_at = global_step_;
    }
    const bool last = global_step_ >= total || epoch >= cfg_.epochs;
    if (!last && opts_.stop) interrupted = opts_.stop->received();
  }
  if (interrupted != 0) {
    if (write && saved_at != global_step_)
      save_state(ckpt_root, epoch, index, count_lines(metrics_path));
    draw_curves();
    throw Interrupted(interrupted,
                      cat("train ", ppo_algorithm_name(opts_.algorithm), ": stopped by ",
                          StopSignalGuard::name(interrupted), " after RL step ", global_step_,
                          " of ", total,
                          write ? cat("; resumable checkpoint in ", latest_checkpoint(ckpt_root),
                                      "; continue with the same command and --resume")
                                : std::string("; nothing was written (no output folder)")));
  }
  if (write && saved_at != global_step_)
    save_state(ckpt_root, epoch, index, root() ? count_lines(metrics_path) : 0);
  // The verdict on the final policy alone (every rank samples its share).
  std::optional<ConstraintCheck> check;
  if (lag() && cfg_.constraint_check_responses > 0) check = check_constraint();
  if (lag() && ranks() > 1) {
    // Every rank says which λ it holds (all the same: the window holds global costs).
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", lagrange_->lambda());
    log_info("train ppo-lag: rank ", rank(), " of ", ranks(), " ends with lambda ", buf);
  }
  if (!root() && opts_.save_actor && write && actor_->params_sharded())
    model::save_weights(*actor_, opts_.output_dir, DType::F32);  // joins rank 0's gather only
  if (!root()) return;
  if (lag()) report_constraint(calibration, check);
  draw_curves();
  if (opts_.save_actor && write) {
    // A resumed run replaces the final model an earlier (shorter) run wrote.
    if (resumed) {
      fs::remove(out / "beaver.json");
      fs::remove(out / "model.safetensors");
    }
    save_actor(opts_.output_dir);
  }
}

// Whether the run ends with its constraint met, logged and written to
// <output_dir>/constraint.json: with --constraint_check_responses, the fresh responses of the
// final policy decide (check); otherwise the training window's mean episode cost.
void RlhfTrainer::report_constraint(const std::optional<ResolvedThreshold>& calibration,
                                    const std::optional<ConstraintCheck>& check) const {
  if (lagrange_->window_count() == 0 && !check) return;
  const double th = lagrange_->options().threshold;
  const bool has_window = lagrange_->window_count() > 0;
  const double j = has_window ? lagrange_->window_mean() : 0.0;
  const auto w = lagrange_->state().window;
  double unsafe = 0;
  for (float c : w) unsafe += c > 0 ? 1.0 : 0.0;
  if (!w.empty()) unsafe /= double(w.size());
  // The window's verdict: the plain window mean against the threshold (the reference's
  // constraint), whatever margin drove λ there.
  const bool window_met = has_window && j <= th;
  const bool met = check ? check->met : window_met;
  const double margin = has_window ? lagrange_->margin() : 0.0;
  if (has_window)
    log_info("train ppo-lag: ", check ? "training window" : "constraint ",
             check ? (window_met ? " within" : " over") : (met ? "met" : "NOT met"),
             check ? " the threshold: " : " at the end: ", "episode cost ", j,
             (window_met ? " <= " : " > "), "threshold ", th, " (unsafe share of the last ",
             w.size(), " responses ", unsafe, ", lambda ", lagrange_->lambda(),
             cfg_.cost_confidence > 0
                 ? cat(", confidence margin ", margin, ": upper bound ", j + margin)
                 : std::string(),
             ")");
  if (check)
    log_info("train ppo-lag: constraint ", met ? "met" : "NOT met", " at the end: mean cost ",
             check->mean_cost, (met ? " <= " : " > "), "threshold ", th, " on ", check->responses,
             " fresh responses of the final policy (unsafe share ", check->unsafe_share,
             cost_unit_ == CostUnit::UnsafeProbability
                 ? cat(", mean probability of unsafe ", check->unsafe_probability)
                 : std::string(),
             ", standard error ", check->standard_error,
             cfg_.cost_confidence > 0
                 ? cat(", upper bound ", check->upper_bound, " at ", cfg_.cost_confidence,
                       " standard errors")
                 : std::string(),
             ", lambda ", lagrange_->lambda(), ")");
  if (opts_.output_dir.empty()) return;
  nlohmann::ordered_json o;
  o["threshold"] = th;
  o["target_unsafe_share"] =
      cfg_.target_unsafe_share >= 0 ? nlohmann::json(cfg_.target_unsafe_share) : nlohmann::json();
  o["target_unsafe_ratio"] =
      cfg_.target_unsafe_ratio >= 0 ? nlohmann::json(cfg_.target_unsafe_ratio) : nlohmann::json();
  if (calibration) o["resolved_target_unsafe_share"] = calibration->target_unsafe_share;
  o["cost_unit"] = cfg_.cost_unit;
  o["cost_scale"] = cost_scale_;
  o["cost_confidence"] = cfg_.cost_confidence;
  o["lambda_kp"] = cfg_.lambda_kp;
  o["lambda_kd"] = cfg_.lambda_kd;
  if (calibration) {
    o["calibration"] = {{"responses", calibration->responses},
                        {"unsafe_share", calibration->unsafe_share},
                        {"mean_cost", calibration->mean_cost},
                        {"mean_unsafe", calibration->mean_unsafe},
                        {"mean_safe", calibration->mean_safe},
                        {"unsafe_probability", calibration->unsafe_probability}};
  }
  o["final_episode_cost"] = has_window ? nlohmann::json(j) : nlohmann::json();
  o["final_unsafe_share"] = has_window ? nlohmann::json(unsafe) : nlohmann::json();
  o["final_margin"] = margin;
  o["final_lambda"] = lagrange_->lambda();
  o["window_met"] = window_met;
  if (check) {
    o["check"] = {{"responses", check->responses},
                  {"mean_cost", check->mean_cost},
                  {"standard_error", check->standard_error},
                  {"upper_bound", check->upper_bound},
                  {"unsafe_share", check->unsafe_share},
                  {"unsafe_probability", check->unsafe_probability},
                  {"met", check->met}};
  }
  o["verdict_from"] = check ? "check" : "window";
  o["met"] = met;
  write_text_file((fs::path(opts_.output_dir) / "constraint.json").string(), o.dump(2) + "\n");
}

// ---- Checkpoints -------------------------------------------------------------------------------
nlohmann::json RlhfTrainer::run_config() const {
  // Everything that decides what the run computes; max_steps and the output settings may change
  // between a run and its resumption.
  nlohmann::json j;
  j["algorithm"] = ppo_algorithm_name(opts_.algorithm);
  PpoConfig c = cfg_;
  c.visit([&](const char* name, const auto& v, const char*) { j[name] = v; });
  // The final check samples after the last update: it changes no step, so a resumed run may
  // choose it anew. Keys added later are left out at their default (zero PID gains, the score
  // unit), so checkpoints written before they existed resume as the runs they are.
  j.erase("constraint_check_responses");
  for (const auto& [k, v] : rlhf_optional_run_config())
    if (j.contains(k) && j[k] == v) j.erase(k);
  j["actor_model"] = opts_.actor_model;
  j["reward_model"] = opts_.reward_model;
  j["cost_model"] = opts_.cost_model;
  j["reward_critic_model"] = opts_.reward_critic_model;
  j["cost_critic_model"] = opts_.cost_critic_model;
  auto specs = [](const std::vector<DatasetSpec>& v) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& d : v) a.push_back(cat(d.path, ":", d.proportion));
    return a;
  };
  j["train_datasets"] = specs(opts_.train_datasets);
  j["ptx_datasets"] = specs(opts_.ptx_datasets);
  return j;
}

void RlhfTrainer::save_state(const std::string& root, int64_t epoch, int64_t index,
                             int64_t metrics_lines) const {
  RlhfProgress p;
  p.global_step = global_step_;
  p.epoch = epoch;
  p.index = index;
  p.sequences_sampled = sequences_sampled_;
  p.ptx_cycle = impl_->ptx_cycle;
  p.ptx_position = int64_t(impl_->ptx_pos);
  p.lambda_steps = lambda_steps_;
  p.metrics_lines = metrics_lines;
  p.lagrange = lagrange_->state();
  p.threshold = lagrange_->options().threshold;
  p.cost_scale = cost_scale_;
  p.ranks = ranks();
  // λ is optimiser state too: a non-finite one is never written (JSON would store it as null).
  BEAVER_CHECK(std::isfinite(p.lagrange.log_lambda), "train ", ppo_algorithm_name(opts_.algorithm),
               ": log lambda is ", p.lagrange.log_lambda, " at RL step ", global_step_,
               "; refusing to write a checkpoint with a non-finite Lagrange multiplier");
  const auto j = rlhf_state_json(p, run_config());
  const std::string dir = write_checkpoint(
      root, global_step_,
      [&](const std::string& d) {
        // Models and the state once (rank 0); optimizer state by every rank (its shard).
        // Sharded parameters (stage 3): save_weights is a collective, rank 0 writes.
        const auto once = [&](const model::LlamaModel& m) {
          return rank() == 0 || m.params_sharded();
        };
        if (once(*actor_)) model::save_weights(*actor_, d + "/actor", DType::F32, opts_.actor_model);
        impl_->actor_opt->save(d + "/actor_optimizer");
        if (once(*critic_r_)) model::save_weights(*critic_r_, d + "/reward_critic");
        impl_->critic_opt[0]->save(d + "/reward_critic_optimizer");
        if (critic_c_) {
          if (once(*critic_c_)) model::save_weights(*critic_c_, d + "/cost_critic");
          impl_->critic_opt[1]->save(d + "/cost_critic_optimizer");
        }
        if (rank() == 0) write_text_file(d + "/rlhf_state.json", j.dump(2) + "\n");
      },
      opts_.keep_checkpoints, opts_.comm);
  if (rank() == 0) log_info("train: checkpoint ", dir);
}

bool RlhfTrainer::load_state(const std::string& root, int64_t& epoch, int64_t& index,
                             int64_t& metrics_lines) {
  const std::string dir = latest_checkpoint(root);
  if (dir.empty()) return false;
  const std::string where = dir + "/rlhf_state.json";
  const RlhfProgress p =
      parse_rlhf_state(read_text_file(where), where, run_config(), lagrange_->options(), ranks());
  global_step_ = p.global_step;
  epoch = p.epoch;
  index = p.index;
  sequences_sampled_ = p.sequences_sampled;
  impl_->ptx_cycle = p.ptx_cycle;
  impl_->ptx_pos = size_t(p.ptx_position);
  lambda_steps_ = p.lambda_steps;
  metrics_lines = p.metrics_lines;
  lagrange_->restore(p.lagrange);
  lagrange_->set_threshold(p.threshold);
  cost_scale_ = p.cost_scale;
  BEAVER_CHECK(index < int64_t(prompts_.size()), where, ": prompt position ", index,
               " is past the prompt set of ", prompts_.size());
  // The PTX order of the pass in progress is a function of (seed, pass).
  if (impl_->ptx_cycle > 0)
    impl_->ptx_order = shuffled_indices(impl_->ptx.size(), uint64_t(cfg_.seed),
                                        0x7058ull + impl_->ptx_cycle - 1);
  BEAVER_CHECK(impl_->ptx_pos <= impl_->ptx_order.size(), where, ": PTX position ",
               impl_->ptx_pos, " is past the PTX set");
  model::load_weights(*actor_, dir + "/actor");
  impl_->actor_opt->load(dir + "/actor_optimizer");
  model::load_weights(*critic_r_, dir + "/reward_critic");
  impl_->critic_opt[0]->load(dir + "/reward_critic_optimizer");
  if (critic_c_) {
    model::load_weights(*critic_c_, dir + "/cost_critic");
    impl_->critic_opt[1]->load(dir + "/cost_critic_optimizer");
  }
  log_info("train: resumed from ", dir, " (RL step ", global_step_, ", epoch ", epoch,
           ", position ", index, ")",
           p.ranks != ranks() ? cat("; written by ", p.ranks, " rank(s), continued on ", ranks(),
                                    ", the optimizer state re-sharded")
                              : std::string());
  return true;
}

void RlhfTrainer::save_actor(const std::string& dir) const {
  model::save_weights(*actor_, dir, DType::F32, opts_.actor_model);
  log_info("train: wrote the actor to ", dir);
}

std::vector<plot::Panel> rl_curve_panels(PpoAlgorithm algorithm, const std::string& metrics_jsonl,
                                         double threshold) {
  const bool lag = algorithm == PpoAlgorithm::PpoLag;
  const auto series = plot::read_metrics(
      metrics_jsonl, "step",
      {"lambda", "episode_cost", "reward", "cost", "kl", "response_length", "actor_loss",
       "reward_critic_loss", "cost_critic_loss", "generation_s", "scoring_s", "training_s"});
  auto pick = [&](std::initializer_list<const char*> names) {
    std::vector<plot::Series> out;
    for (const char* n : names)
      for (const auto& s : series)
        if (s.name == n && !s.x.empty()) out.push_back(s);
    return out;
  };
  std::vector<plot::Panel> panels;
  auto add = [&](const char* title, std::initializer_list<const char*> names) {
    auto s = pick(names);
    if (!s.empty()) panels.push_back(plot::Panel{title, std::move(s)});
  };
  // λ and the cost critic exist only in PPO-Lag; the baselines log neither panel.
  if (lag) add("Lagrange multiplier", {"lambda"});
  if (lag) {
    // The threshold as a flat line makes "J_C above / below the constraint" readable.
    auto s = pick({"episode_cost"});
    if (!s.empty()) {
      plot::Series th{"threshold", s[0].x, std::vector<double>(s[0].x.size(), threshold)};
      s.push_back(th);
      panels.push_back(plot::Panel{"episode cost J_C", std::move(s)});
    }
  } else {
    add("episode cost J_C", {"episode_cost"});
  }
  add("reward and cost", {"reward", "cost"});
  add("KL (sum per sequence)", {"kl"});
  add("response length", {"response_length"});
  if (lag)
    add("losses", {"actor_loss", "reward_critic_loss", "cost_critic_loss"});
  else
    add("losses", {"actor_loss", "reward_critic_loss"});
  add("seconds per step", {"generation_s", "scoring_s", "training_s"});
  return panels;
}

void RlhfTrainer::draw_curves() const {
  if (opts_.output_dir.empty()) return;
  const std::string jsonl = (fs::path(opts_.output_dir) / "metrics.jsonl").string();
  if (!fs::exists(jsonl)) return;
  const auto panels = rl_curve_panels(opts_.algorithm, jsonl,
                                      lag() ? lagrange_->options().threshold : 0.0);
  if (!panels.empty())
    plot::line_panels((fs::path(opts_.output_dir) / "curves.png").string(), "RL step", panels);
}

int64_t rlhf_micro_batch(const PpoConfig& c) {
  return std::min(c.per_device_train_batch_size, c.per_device_prompt_batch_size);
}

}  // namespace beaver::train
