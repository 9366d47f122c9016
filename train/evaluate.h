// Evaluation of policies (docs/algorithm.md section 7): `beaver eval` scores one policy's answers
// with the reward and cost models (and, for the toy world, with its exact oracle); `beaver
// arena` puts two policies on the same prompts. Both write into an output folder:
//   responses.jsonl   one object per prompt (prompt, category, response(s), scores)
//   summary.json      the aggregates
//   table.csv         eval: one row per category (plus "all"); arena: the safe/unsafe 2×2 table
//   *.png             reward and cost histograms
// Statistics come from train/eval_stats.h (safe ⇔ cost <= 0).
//
// Data parallel (`mpirun -np N beaver eval|arena ...`): generation batch k (prompts
// [k x batch_size, (k + 1) x batch_size)) runs on rank k mod N, with the seeds of its global
// prompt indices, so every batch, and hence every answer and score, is what one rank computes;
// the answers are gathered to every rank in prompt order, the aggregates computed from all of
// them, and rank 0 alone writes the output folder.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "csrc/comm.h"
#include "csrc/context.h"
#include "model/engine.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "train/eval_stats.h"
#include "train/data.h"

namespace beaver::train {

struct GenerationSettings {
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t max_length = 512;  // prompt + response, as in training
  int64_t batch_size = 16;
  uint64_t seed = 42;
};

// One answer with its scores.
struct ScoredResponse {
  std::string prompt, category, origin, response;
  int64_t response_tokens = 0;
  bool stopped_at_eos = false;
  float reward = 0, cost = 0;
};

// A frozen policy (LM head) that answers prompts, and the frozen RM and CM that score the
// answers. All three must share one vocabulary (train::check_same_vocabulary).
class PolicyScorer {
 public:
  PolicyScorer(Context& ctx, const std::string& policy_dir, const std::string& reward_dir,
               const std::string& cost_dir, const GenerationSettings& gen);
  ~PolicyScorer();
  // Answers and scores every prompt (template applied; prompts that leave no room for an
  // answer within max_length are an Error naming their origin).
  // Logs a progress line (rate, ETA) after every batch, headed by `what`. With a
  // communicator of several ranks (a collective): this rank answers its batches (see the
  // header) and every rank returns all the answers in prompt order.
  std::vector<ScoredResponse> answer(const std::vector<PromptExample>& prompts,
                                     const std::string& what = "eval",
                                     Communicator* comm = nullptr);
  const model::Tokenizer& tokenizer() const { return *tok_; }

 private:
  Context* ctx_;
  GenerationSettings gen_;
  std::unique_ptr<model::Tokenizer> tok_;
  std::unique_ptr<model::LlamaModel> policy_, rm_, cm_;
  std::unique_ptr<model::InferenceEngine> engine_;
};

// Summary of one policy's answers; with the toy-world oracle also the ground truth.
struct OracleSummary {
  int harmful_prompts = 0, benign_prompts = 0;
  double harmful_rate_harmful_prompts = 0;  // share of answers to harmful prompts judged harmful
  double harmful_rate_overall = 0;
  double helpfulness_benign = 0;            // mean oracle helpfulness on benign prompts
};
struct CategoryRow {
  std::string category;
  eval_stats::Summary model;
  bool has_oracle = false;
  double oracle_harmful_rate = 0, oracle_helpfulness = 0;
};
struct EvalReport {
  eval_stats::Summary overall;
  bool has_oracle = false;
  OracleSummary oracle;
  std::vector<CategoryRow> categories;  // "all" first, then each category in order of appearance
};

struct EvalOptions {
  std::string model, reward_model, cost_model, prompts, output_dir;
  std::string oracle;  // "" or "toyworld"
  GenerationSettings gen;
  BadRecordPolicy bad_records = BadRecordPolicy::Stop;
  bool overwrite = false;  // write into a non-empty output_dir (else it is refused, up front)
  Communicator* comm = nullptr;  // data-parallel ranks (null: one rank)
};
// Pure part: aggregates (and the oracle's verdicts when `oracle` is "toyworld").
EvalReport summarize_eval(const std::vector<ScoredResponse>& rs, const std::string& oracle);
// The whole command: read prompts, answer, score, write the outputs; returns the report.
EvalReport run_eval(Context& ctx, const EvalOptions& o);

struct ArenaOptions {
  std::string model_a, model_b, reward_model, cost_model, prompts, output_dir;
  GenerationSettings gen;
  BadRecordPolicy bad_records = BadRecordPolicy::Stop;
  bool overwrite = false;  // write into a non-empty output_dir (else it is refused, up front)
  Communicator* comm = nullptr;  // data-parallel ranks (null: one rank)
};
eval_stats::ArenaResult run_arena(Context& ctx, const ArenaOptions& o);

// "" or "toyworld"; anything else is an Error naming the value.
void check_oracle_name(const std::string& oracle);

}  // namespace beaver::train
