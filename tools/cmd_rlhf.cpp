// `beaver train ppo-lag | ppo | ppo-shaping`: the RL stage (train/rlhf.h). Every PPO
// hyperparameter is a flag with the reference scripts' name and default (PpoConfig::visit);
// the baselines take their own defaults (β = 0.02). The three commands hang under `train`,
// which the supervised stages share: the `train` subcommand is created here only when no one
// has registered it yet.
#include <memory>
#include <string>
#include <vector>

#include "csrc/context.h"
#include "csrc/error.h"
#include "csrc/log.h"
#include "csrc/stop_signal.h"
#include "tools/commands.h"
#include "tools/nonfinite_flags.h"
#include "tools/plan_flags.h"
#include "tools/ranks.h"
#include "train/rlhf.h"
#include "train/zero.h"

namespace beaver::tools {

namespace {

struct RlhfArgs {
  train::RlhfOptions opts;
  std::vector<std::string> train_datasets, ptx_datasets;
  std::string bad_records = "stop";
  std::string device = "cpu";
  int threads = 0;
  NonfiniteFlags nonfinite;
  PlanFlags plan;
};

Context make_context(const std::string& device, int threads, Communicator& comm) {
  if (device == "cpu") return Context::cpu(threads);
  if (device == "cuda") {
    Context ctx = Context::cuda(comm.local_rank());
    comm.use_cuda(ctx.device_index());
    return ctx;
  }
  BEAVER_FAIL("--device: expected cpu or cuda, got '", device, "'");
}

void run_rlhf(RlhfArgs& a, Communicator& comm) {
  for (const auto& s : a.train_datasets) a.opts.train_datasets.push_back(train::parse_dataset_spec(s));
  for (const auto& s : a.ptx_datasets) a.opts.ptx_datasets.push_back(train::parse_dataset_spec(s));
  a.opts.bad_records = train::parse_bad_record_policy(a.bad_records);
  a.opts.nonfinite = a.nonfinite.resolve();
  BEAVER_CHECK(a.device == "cpu" || a.device == "cuda", "--device: expected cpu or cuda, got '",
               a.device, "'");
  const Device device = a.device == "cuda" ? Device::CUDA : Device::CPU;
  std::string why;
  a.opts.zero3_generation = train::resolve_zero3_generation(
      a.opts, device, comm.size(), a.plan.device_bytes(), &why, &comm);
  if (comm.is_root() && !why.empty())
    log_info("train ", train::ppo_algorithm_name(a.opts.algorithm), ": ", why);
  const train::PlanSetup plan = train::rlhf_plan_setup(a.opts, device, comm.size());
  if (a.plan.check(plan, "--per_device_train_batch_size",
                   "--actor_gradient_checkpointing true --critic_gradient_checkpointing true",
                   comm.is_root()))
    return;
  const StopSignalGuard stop;  // Ctrl-C / SIGTERM: checkpoint after the current RL step
  a.opts.stop = &stop;
  a.opts.comm = &comm;
  Context ctx = make_context(a.device, a.threads, comm);
  train::RlhfTrainer trainer(ctx, a.opts);
  trainer.train();
}

void add_algorithm(CLI::App& train_cmd, train::PpoAlgorithm algo, const char* help) {
  auto* cmd = train_cmd.add_subcommand(std::string(train::ppo_algorithm_name(algo)), help);
  auto a = std::make_shared<RlhfArgs>();
  a->opts.algorithm = algo;
  a->opts.ppo = train::PpoConfig::defaults(algo);
  auto& o = a->opts;
  cmd->add_option("--actor_model_name_or_path", o.actor_model, "SFT policy (actor and reference)")
      ->required();
  cmd->add_option("--reward_model_name_or_path", o.reward_model, "Reward model")->required();
  cmd->add_option("--cost_model_name_or_path", o.cost_model,
                  algo == train::PpoAlgorithm::Ppo ? "Cost model (optional: logged only)"
                                                   : "Cost model");
  cmd->add_option("--reward_critic_model_name_or_path", o.reward_critic_model,
                  "Reward critic initialisation (default: the reward model)");
  if (algo == train::PpoAlgorithm::PpoLag)
    cmd->add_option("--cost_critic_model_name_or_path", o.cost_critic_model,
                    "Cost critic initialisation (default: the cost model)");
  cmd->add_option("--train_datasets", a->train_datasets, "Prompt-only sets, path[:proportion]")
      ->required();
  cmd->add_option("--ptx_datasets", a->ptx_datasets, "SFT sets for the PTX loss, path[:proportion]");
  cmd->add_option("--output_dir", o.output_dir, "Metrics, curves and the trained actor")->required();
  cmd->add_option("--max_steps", o.max_steps, "Stop after this many RL steps (0: all epochs)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--plot_steps", o.plot_steps, "Redraw curves.png every N steps (0: at the end)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--save_interval", o.save_interval,
                  "RL steps between checkpoints (0: only at the end; Ctrl-C or SIGTERM also "
                  "writes one, after the current step)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--keep_checkpoints", o.keep_checkpoints, "Newest checkpoints kept (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_flag("--resume", o.resume,
                "Continue the run in --output_dir from its latest checkpoint (an error when "
                "there is none)");
  cmd->add_option("--bad_records", a->bad_records, "Malformed data records: stop or skip");
  a->nonfinite.add(*cmd);
  a->plan.add(*cmd);
  cmd->add_option("--device", a->device, "cpu or cuda");
  cmd->add_option("--threads", a->threads, "CPU threads (0: OpenMP default)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--prompt_batch_size", o.prompt_batch_size,
                  "Global prompts per RL step over all ranks; sets the per-device size (0: "
                  "--per_device_prompt_batch_size x ranks)")
      ->check(CLI::NonNegativeNumber)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  add_zero_stage_flag(cmd, o.zero_stage);
  add_zero3_generation_flag(cmd, o.zero3_generation);
  cmd->add_option("--reuse_scoring_forward", o.reuse_scoring_forward,
                  "The first training micro-step of each RL step backpropagates from the "
                  "scoring forward's activations instead of running that forward again (the "
                  "same step, bitwise; false: always run it)")
      ->capture_default_str();
  o.ppo.visit([&](const char* name, auto& field, const char* h) {
    // Reward shaping's ν and the λ settings only mean something for their algorithm.
    const std::string n = name;
    const bool lambda_flag = n.rfind("lambda_", 0) == 0 || n == "episode_cost_window_size" ||
                             n == "threshold";
    if (lambda_flag && algo != train::PpoAlgorithm::PpoLag) return;
    if (n == "shaping_nu" && algo != train::PpoAlgorithm::PpoRewardShaping) return;
    // The scripts set every flag; one given again on their command line replaces it.
    cmd->add_option("--" + n, field, h)
        ->capture_default_str()
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  });
  cmd->callback([a] {
    train::check_zero_stage(a->opts.zero_stage);
    run_on_ranks([&](Communicator& comm) { run_rlhf(*a, comm); });
  });
}

}  // namespace

void add_rlhf_command(CLI::App& app) {
  CLI::App* train_cmd = nullptr;
  for (CLI::App* s : app.get_subcommands([](CLI::App* c) { return c->get_name() == "train"; }))
    train_cmd = s;
  if (!train_cmd) {
    train_cmd = app.add_subcommand("train", "Train a stage of the Safe RLHF pipeline");
    train_cmd->require_subcommand(1);
  }
  add_algorithm(*train_cmd, train::PpoAlgorithm::PpoLag,
                "PPO-Lagrangian: maximise reward subject to cost <= threshold (Safe RLHF)");
  add_algorithm(*train_cmd, train::PpoAlgorithm::Ppo, "PPO on the reward only (baseline)");
  add_algorithm(*train_cmd, train::PpoAlgorithm::PpoRewardShaping,
                "PPO on the shaped score R - nu * C (baseline)");
}

}  // namespace beaver::tools
