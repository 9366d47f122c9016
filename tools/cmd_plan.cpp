// `beaver plan`: the memory plan of a training run (train/memory_plan.h) without its data:
// per rank, per role, per item, against the device's memory. Models are folders (their
// config.json or beaver.json is read, never their weights) or the built-in LLaMA shapes
// llama-7b, llama-13b, llama-70b (Hugging Face's configs of LLaMA-1 7B/13B and Llama-2 70B,
// with the pad token safe-rlhf adds: vocabulary 32001). Every role of the workload takes the
// --model shape unless a role flag names another.
#include <cstdio>
#include <memory>
#include <string>

#include "csrc/error.h"
#include "model/loader.h"
#include "tools/commands.h"
#include "tools/plan_flags.h"
#include "tools/ranks.h"
#include "train/memory_plan.h"
#include "train/rlhf.h"
#include "train/stages.h"

namespace beaver::tools {

namespace {

model::LlamaConfig preset(int64_t h, int64_t inter, int64_t layers, int64_t heads, int64_t kv) {
  model::LlamaConfig c;
  c.hidden_size = h;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv;
  c.head_dim = h / heads;
  c.vocab_size = 32001;
  c.max_position_embeddings = 4096;
  return c;
}

model::LlamaConfig config_of(const std::string& path) {
  if (path == "llama-7b") return preset(4096, 11008, 32, 32, 32);
  if (path == "llama-13b") return preset(5120, 13824, 40, 40, 40);
  if (path == "llama-70b") return preset(8192, 28672, 80, 64, 8);
  return model::checkpoint_config(path);
}

struct PlanArgs {
  std::string workload = "ppo-lag", model = "llama-7b", reward_model, cost_model, device = "cuda";
  int ranks = 1, zero_stage = 0;
  int64_t batch = 0, prompt_batch = 0, max_length = 0;
  std::string recompute = "default";
  train::Zero3Generation zero3_generation = train::Zero3Generation::Auto;
  PlanFlags flags;
};

void run_plan(const PlanArgs& a) {
  BEAVER_CHECK(a.device == "cpu" || a.device == "cuda", "--device: expected cpu or cuda, got '",
               a.device, "'");
  BEAVER_CHECK(a.ranks >= 1, "--ranks must be >= 1, got ", a.ranks);
  BEAVER_CHECK(a.recompute == "default" || a.recompute == "on" || a.recompute == "off",
               "--recompute: expected default, on or off, got '", a.recompute, "'");
  const Device dev = a.device == "cuda" ? Device::CUDA : Device::CPU;
  train::PlanSetup setup;
  std::string why;  // what --zero3_generation auto chose
  const std::string& w = a.workload;
  if (w == "sft" || w == "rm" || w == "cm") {
    train::StageArgs s;  // the defaults of `beaver train <stage>`
    s.stage = w == "sft" ? train::Stage::SFT : w == "rm" ? train::Stage::RM : train::Stage::CM;
    s.per_device_train_batch_size = s.per_device_eval_batch_size = w == "sft" ? 4 : 16;
    s.max_length = 512;
    if (a.batch > 0) s.per_device_train_batch_size = s.per_device_eval_batch_size = a.batch;
    if (a.max_length > 0) s.max_length = a.max_length;
    s.model_name_or_path = a.model;
    s.zero_stage = a.zero_stage;
    setup = train::stage_plan_setup(s, dev, a.ranks, config_of);
  } else {
    train::RlhfOptions o;
    o.algorithm = w == "ppo-lag" ? train::PpoAlgorithm::PpoLag
                  : w == "ppo"   ? train::PpoAlgorithm::Ppo
                  : w == "ppo-shaping"
                      ? train::PpoAlgorithm::PpoRewardShaping
                      : throw Error(cat("--workload: expected sft, rm, cm, ppo-lag, ppo or "
                                        "ppo-shaping, got '", w, "'"));
    o.ppo = train::PpoConfig::defaults(o.algorithm);
    if (a.batch > 0) o.ppo.per_device_train_batch_size = a.batch;
    if (a.prompt_batch > 0) o.ppo.per_device_prompt_batch_size = a.prompt_batch;
    if (a.max_length > 0) o.ppo.max_length = a.max_length;
    o.actor_model = a.model;
    o.reward_model = a.reward_model.empty() ? a.model : a.reward_model;
    o.cost_model = a.cost_model.empty() ? a.model : a.cost_model;
    o.zero_stage = a.zero_stage;
    o.zero3_generation = a.zero3_generation;
    o.zero3_generation = train::resolve_zero3_generation(o, dev, a.ranks, a.flags.device_bytes(),
                                                         &why, nullptr, config_of);
    setup = train::rlhf_plan_setup(o, dev, a.ranks, config_of);
  }
  setup.zero_stage = a.zero_stage;
  if (a.recompute != "default")
    for (auto& r : setup.roles) r.options.recompute = r.options.training && a.recompute == "on";
  PlanFlags show = a.flags;
  show.dry_run = true;
  show.check(setup, "", "", true);
  if (!why.empty()) std::printf("  %s\n", why.c_str());
}

}  // namespace

void add_plan_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "plan", "Memory plan of a training run per rank (reads model configs only, never weights)");
  auto a = std::make_shared<PlanArgs>();
  cmd->add_option("--workload", a->workload, "sft | rm | cm | ppo-lag | ppo | ppo-shaping")
      ->capture_default_str();
  cmd->add_option("--model,--model_name_or_path", a->model,
                  "Model folder, or llama-7b | llama-13b | llama-70b (every role)")
      ->capture_default_str();
  cmd->add_option("--reward_model_name_or_path", a->reward_model, "Reward model and its critic");
  cmd->add_option("--cost_model_name_or_path", a->cost_model, "Cost model and its critic");
  cmd->add_option("--ranks", a->ranks, "Data-parallel ranks")->capture_default_str();
  cmd->add_option("--zero_stage", a->zero_stage, "0 | 1 | 2 | 3")
      ->capture_default_str();
  add_zero3_generation_flag(cmd, a->zero3_generation);
  cmd->add_option("--device", a->device, "cpu | cuda")->capture_default_str();
  cmd->add_option("--per_device_train_batch_size", a->batch,
                  "Per-device batch (0: the workload's default)");
  cmd->add_option("--per_device_prompt_batch_size", a->prompt_batch,
                  "RL prompts per rollout (0: default)");
  cmd->add_option("--max_length", a->max_length, "Tokens per sequence (0: default)");
  cmd->add_option("--recompute", a->recompute,
                  "Activation recomputation of the trained roles: default | on | off")
      ->capture_default_str();
  a->flags.add(*cmd, false);
  cmd->callback([a] { run_plan(*a); });
}

}  // namespace beaver::tools
