// `beaver eval` (one policy scored by the reward and cost models, optionally by the toy world's
// oracle) and `beaver arena` (two policies on the same prompts: win rate, safe/unsafe table,
// Elo). Both write responses.jsonl, summary.json, table.csv and PNG histograms (train/evaluate.h).
// Under `mpirun -np N` the generation batches are spread over the ranks (train/evaluate.h) and
// rank 0 writes the same files one rank would.
#include <memory>
#include <string>

#include "csrc/context.h"
#include "csrc/error.h"
#include "tools/commands.h"
#include "tools/ranks.h"
#include "train/evaluate.h"

namespace beaver::tools {

namespace {

struct CommonArgs {
  train::GenerationSettings gen;
  std::string bad_records = "stop";
  std::string device = "cpu";
  int threads = 0;
};

void add_common(CLI::App* cmd, CommonArgs& c) {
  cmd->add_option("--temperature", c.gen.temperature, "Sampling temperature (0: greedy)")
      ->capture_default_str();
  cmd->add_option("--top_p", c.gen.top_p, "Nucleus mass (1: off)")->capture_default_str();
  cmd->add_option("--max_length", c.gen.max_length, "Prompt + response tokens")
      ->capture_default_str();
  cmd->add_option("--batch_size", c.gen.batch_size, "Prompts per generation batch")
      ->capture_default_str();
  cmd->add_option("--seed", c.gen.seed, "Prompt k samples with seed + k")->capture_default_str();
  cmd->add_option("--bad_records", c.bad_records, "Malformed prompt records: stop or skip");
  cmd->add_option("--device", c.device, "cpu or cuda");
  cmd->add_option("--threads", c.threads, "CPU threads (0: OpenMP default)")
      ->check(CLI::NonNegativeNumber);
}

// One device per rank on a node (the rank's local index) for cuda.
Context make_context(const CommonArgs& c, const Communicator& comm) {
  if (c.device == "cpu") return Context::cpu(c.threads);
  if (c.device == "cuda") return Context::cuda(comm.local_rank());
  BEAVER_FAIL("--device: expected cpu or cuda, got '", c.device, "'");
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto* ev = app.add_subcommand("eval", "Score a policy's answers with the reward and cost models");
  auto e = std::make_shared<train::EvalOptions>();
  auto ec = std::make_shared<CommonArgs>();
  ev->add_option("--model", e->model, "Policy (causal LM) folder")->required();
  ev->add_option("--reward_model", e->reward_model, "Reward model folder")->required();
  ev->add_option("--cost_model", e->cost_model, "Cost model folder")->required();
  ev->add_option("--prompts", e->prompts, "Prompt file (JSON/JSONL; optional \"category\")")
      ->required();
  ev->add_option("--oracle", e->oracle, "Ground-truth judge: toyworld");
  ev->add_option("--output", e->output_dir, "Output folder (refused if it holds anything)")
      ->required();
  ev->add_flag("--overwrite", e->overwrite, "Write into a non-empty --output folder");
  add_common(ev, *ec);
  ev->callback([e, ec] {
    run_on_ranks([&](Communicator& comm) {
      e->gen = ec->gen;
      e->bad_records = train::parse_bad_record_policy(ec->bad_records);
      e->comm = &comm;
      Context ctx = make_context(*ec, comm);
      (void)train::run_eval(ctx, *e);
    });
  });

  auto* ar = app.add_subcommand("arena", "Compare two policies on the same prompts");
  auto a = std::make_shared<train::ArenaOptions>();
  auto ac = std::make_shared<CommonArgs>();
  ar->add_option("--model_a", a->model_a, "Policy A (e.g. the SFT model)")->required();
  ar->add_option("--model_b", a->model_b, "Policy B (e.g. the aligned model)")->required();
  ar->add_option("--reward_model", a->reward_model, "Reward model folder")->required();
  ar->add_option("--cost_model", a->cost_model, "Cost model folder")->required();
  ar->add_option("--prompts", a->prompts, "Prompt file (JSON/JSONL)")->required();
  ar->add_option("--output", a->output_dir, "Output folder (refused if it holds anything)")
      ->required();
  ar->add_flag("--overwrite", a->overwrite, "Write into a non-empty --output folder");
  add_common(ar, *ac);
  ar->callback([a, ac] {
    run_on_ranks([&](Communicator& comm) {
      a->gen = ac->gen;
      a->bad_records = train::parse_bad_record_policy(ac->bad_records);
      a->comm = &comm;
      Context ctx = make_context(*ac, comm);
      (void)train::run_arena(ctx, *a);
    });
  });
}

}  // namespace beaver::tools
