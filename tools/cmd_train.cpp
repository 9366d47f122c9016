// `beaver train sft|rm|cm`: the first three Safe RLHF stages (train/stages.h), with the flag
// names of the safe-rlhf reference scripts. Defaults per stage follow those scripts
// (docs/algorithm.md, section 5 and the stage table):
//   sft: lr 2e-5, cosine, warmup 0.03, weight decay 0, 3 epochs
//   rm / cm: lr 2e-5, cosine, warmup 0.03, weight decay 0.1, 2 epochs, regularization 0.001,
//            sequence-wise loss
// The batch sizes (sft 4 per device x 8 accumulation; rm/cm 16 per device, no accumulation)
// are leads recalled from the reference scripts, not confirmed figures. AdamW betas
// (0.9, 0.95), gradient clip 1.0 and seed 42 are from docs/algorithm.md section 5.
#include <memory>
#include <string>

#include "csrc/log.h"
#include "csrc/stop_signal.h"
#include "tools/commands.h"
#include "tools/nonfinite_flags.h"
#include "tools/plan_flags.h"
#include "tools/ranks.h"
#include "train/data.h"
#include "train/losses.h"
#include "train/schedule.h"
#include "train/stages.h"

namespace beaver::tools {

namespace {

struct TrainFlags {
  train::StageArgs args;
  std::string scheduler = "cosine", loss_type = "sequence-wise", bad_record = "stop";
  std::string inconsistent_pairs = "stop";
  std::string device = "cpu";
  NonfiniteFlags nonfinite;
  PlanFlags plan;
};

void add_stage(CLI::App& parent, train::Stage stage, const char* help) {
  auto* cmd = parent.add_subcommand(std::string(train::stage_name(stage)), help);
  auto f = std::make_shared<TrainFlags>();
  train::StageArgs& a = f->args;
  a.stage = stage;
  if (stage == train::Stage::SFT) {
    a.epochs = 3;
    a.weight_decay = 0.0;
    a.per_device_train_batch_size = 4;  // lead (reference sft.sh), see header
    a.per_device_eval_batch_size = 4;
    a.gradient_accumulation_steps = 8;  // lead
  } else {
    a.epochs = 2;
    a.weight_decay = 0.1;
    a.per_device_train_batch_size = 16;  // lead (reference reward-model.sh / cost-model.sh)
    a.per_device_eval_batch_size = 16;
    a.gradient_accumulation_steps = 1;
  }
  a.learning_rate = 2e-5;
  a.lr_warmup_ratio = 0.03;
  a.max_length = 512;
  a.seed = 42;
  a.max_grad_norm = 1.0;

  cmd->add_option("--model_name_or_path", a.model_name_or_path,
                  stage == train::Stage::SFT
                      ? "Starting causal LM (Beaver checkpoint or HF folder with tokenizer.model)"
                      : "The SFT model (LM head dropped, fresh score head) or a score model")
      ->required();
  cmd->add_option("--train_datasets", a.train_datasets,
                  stage == train::Stage::SFT ? "Alpaca-format files, path[:proportion]"
                                             : "PKU-SafeRLHF-format files, path[:proportion]")
      ->required();
  cmd->add_option("--eval_datasets", a.eval_datasets, "Evaluation files, path[:proportion]");
  cmd->add_option("--eval_split_ratio", a.eval_split_ratio,
                  "Without --eval_datasets: share of the training data held out for evaluation");
  cmd->add_option("--max_length", a.max_length, "Tokens per sequence (longer ones are truncated)");
  cmd->add_option("--epochs", a.epochs, "Passes over the training data");
  cmd->add_option("--per_device_train_batch_size", a.per_device_train_batch_size,
                  stage == train::Stage::SFT ? "Examples per micro-batch" : "Pairs per micro-batch");
  cmd->add_option("--per_device_eval_batch_size", a.per_device_eval_batch_size,
                  "Examples (pairs) per evaluation batch");
  cmd->add_option("--gradient_accumulation_steps", a.gradient_accumulation_steps,
                  "Micro-batches per optimizer step");
  cmd->add_option("--learning_rate", a.learning_rate, "Peak learning rate");
  cmd->add_option("--lr_scheduler_type", f->scheduler, "constant | constant_with_warmup | linear | cosine");
  cmd->add_option("--lr_warmup_ratio", a.lr_warmup_ratio, "Share of steps with linear warmup");
  cmd->add_option("--weight_decay", a.weight_decay,
                  "AdamW weight decay (not on biases and norm weights)");
  cmd->add_option("--adam_beta1", a.adam_beta1, "AdamW beta1");
  cmd->add_option("--adam_beta2", a.adam_beta2, "AdamW beta2");
  cmd->add_option("--max_grad_norm", a.max_grad_norm, "Global gradient-norm clip (<= 0: off)");
  cmd->add_option("--seed", a.seed, "Seed of the data order and of a fresh score head");
  cmd->add_option("--output_dir", a.output_dir, "Run folder (metrics, checkpoints, final model)")
      ->required();
  cmd->add_option("--save_interval", a.save_interval,
                  "Optimizer steps between resumable checkpoints (0: at the end only; "
                  "Ctrl-C or SIGTERM also writes one, after the current step)");
  cmd->add_option("--eval_interval", a.eval_interval,
                  "Optimizer steps between evaluations (0: after every epoch)");
  cmd->add_option("--max_steps", a.max_steps,
                  "Optimizer steps of the run, if fewer than the epochs give: sizes the warmup "
                  "and the decay (0: the epochs decide)");
  cmd->add_option("--log_interval", a.log_interval, "Steps between progress lines");
  cmd->add_option("--keep_checkpoints", a.keep_checkpoints, "Newest checkpoints kept (0: all)");
  if (stage != train::Stage::SFT) {
    cmd->add_option("--loss_type", f->loss_type, "sequence-wise | token-wise");
    cmd->add_option("--regularization", a.score_loss.regularization,
                    "Coefficient of the L2 penalty on the scores");
  }
  if (stage == train::Stage::CM)
    cmd->add_option("--inconsistent_pairs", f->inconsistent_pairs,
                    "Pairs whose safer response is labelled unsafe and the other safe: "
                    "stop (error, as the reference) | drop | keep");
  cmd->add_option("--bad_records,--bad_record", f->bad_record,
                  "Malformed data records: stop (error naming file:line) | skip (count, log)");
  cmd->add_option("--threads", a.threads, "CPU threads (0: all)");
  cmd->add_option("--device", f->device, "cpu | cuda");
  cmd->add_flag("--resume", a.resume,
                "Continue the run in --output_dir from its latest checkpoint (an error when "
                "there is none)");
  f->nonfinite.add(*cmd);
  cmd->add_option("--train_batch_size", a.train_batch_size,
                  "Global batch per optimizer step (per device x accumulation x ranks); sets "
                  "the per-device size (0: use --per_device_train_batch_size)");
  add_zero_stage_flag(cmd, a.zero_stage);
  f->plan.add(*cmd);

  // A scalar flag given twice takes its last value, so the stage scripts' defaults can be
  // overridden by appending flags ("$@").
  for (CLI::Option* o : cmd->get_options())
    if (o->get_expected_max() == 1 && o->get_type_size_max() <= 1)
      o->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

  cmd->callback([f] {
    train::StageArgs args = f->args;
    args.lr_scheduler_type = train::parse_schedule(f->scheduler);
    args.score_loss.loss_type = train::parse_score_loss_type(f->loss_type);
    args.bad_record = train::parse_bad_record_policy(f->bad_record);
    args.nonfinite = f->nonfinite.resolve();
    args.inconsistent_pairs = train::parse_inconsistent_pair_policy(f->inconsistent_pairs);
    BEAVER_CHECK(f->device == "cpu" || f->device == "cuda", "--device must be cpu or cuda, got '",
                 f->device, "'");
    args.use_cuda = f->device == "cuda";
    const StopSignalGuard stop;  // Ctrl-C / SIGTERM: checkpoint after the current step
    args.stop = &stop;
    run_on_ranks([&](Communicator& comm) {
    args.comm = &comm;
    const train::PlanSetup plan = train::stage_plan_setup(
        args, args.use_cuda ? Device::CUDA : Device::CPU, comm.size());
    if (f->plan.check(plan, "--per_device_train_batch_size", "", comm.is_root())) return;
    const train::StageResult r = train::run_stage(args);
    if (!comm.is_root()) return;
    std::printf("%s: %lld steps, train loss %.4f -> %.4f, %.0f tokens/s", 
                std::string(train::stage_name(args.stage)).c_str(), (long long)r.steps,
                r.first_loss, r.last_loss, r.tokens_per_s());
    for (const auto& [k, v] : r.eval) std::printf(", %s %.4f", k.c_str(), v);
    if (r.skipped_steps > 0) std::printf(", %lld steps skipped", (long long)r.skipped_steps);
    std::printf("\n");
    });
  });
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a Safe RLHF stage");
  cmd->require_subcommand(1);
  add_stage(*cmd, train::Stage::SFT, "Supervised fine-tuning (causal LM on Alpaca-format data)");
  add_stage(*cmd, train::Stage::RM, "Reward model (helpfulness pairs)");
  add_stage(*cmd, train::Stage::CM, "Cost model (harmlessness pairs and safety labels)");
}

}  // namespace beaver::tools
