// SFT, reward-model and cost-model training loops (stages.h).
#include "train/stages.h"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <memory>
#include <optional>

#include "csrc/context.h"
#include "csrc/error.h"
#include "csrc/log.h"
#include "csrc/profile.h"
#include "csrc/stop_signal.h"
#include "csrc/timer.h"
#include "model/llama.h"
#include "model/loader.h"
#include "model/tokenizer.h"
#include "train/batching.h"
#include "train/checkpoint_dir.h"
#include "train/distributed.h"
#include "train/metrics.h"
#include "train/optimizer.h"
#include "train/plot.h"
#include "train/trainer_state.h"

namespace beaver::train {

namespace fs = std::filesystem;

std::string_view stage_name(Stage s) {
  switch (s) {
    case Stage::SFT: return "sft";
    case Stage::RM: return "rm";
    case Stage::CM: return "cm";
  }
  return "?";
}

namespace {

using Values = std::vector<std::pair<std::string, double>>;

std::vector<DatasetSpec> specs_of(const std::vector<std::string>& v) {
  std::vector<DatasetSpec> out;
  for (const auto& s : v) out.push_back(parse_dataset_spec(s));
  return out;
}

void log_reports(const std::vector<ReadReport>& reports, const char* what) {
  for (const auto& r : reports) {
    log_info(what, ": ", r.path, ": ", r.records, " records",
             r.skipped ? cat(", ", r.skipped, " malformed skipped") : std::string());
    if (!r.inconsistent.empty())
      log_warn(what, ": ", r.path, ": ", r.inconsistent.size(),
               " pairs whose safer response is labelled unsafe while the other is labelled "
               "safe, first at ", r.inconsistent.front());
  }
}

// Everything one stage needs once the flags are checked.
struct Run {
  const StageArgs& a;
  Context ctx;
  model::Tokenizer tok;
  std::unique_ptr<model::LlamaModel> m;
  BatchLayout layout;
  std::vector<SftSample> sft_train, sft_eval;
  std::vector<PairSample> pair_train, pair_eval;
  std::string metrics_path;
  std::unique_ptr<MetricsLog> log;

  size_t train_size() const { return a.stage == Stage::SFT ? sft_train.size() : pair_train.size(); }
  size_t eval_size() const { return a.stage == Stage::SFT ? sft_eval.size() : pair_eval.size(); }
};

// A pair whose two sequences are identical after truncation carries no ranking signal (and has
// no token-wise window): drop it, counted.
std::vector<PairSample> drop_identical(std::vector<PairSample> v, int64_t max_length,
                                       const char* what) {
  std::vector<PairSample> out;
  size_t dropped = 0;
  for (auto& p : v) {
    const size_t na = std::min<size_t>(p.a.size(), size_t(max_length));
    const size_t nb = std::min<size_t>(p.b.size(), size_t(max_length));
    if (na == nb && std::equal(p.a.begin(), p.a.begin() + long(na), p.b.begin())) {
      if (dropped++ == 0) log_warn(what, ": ", p.origin, ": both responses are identical after "
                                   "truncation; such pairs are dropped");
      continue;
    }
    out.push_back(std::move(p));
  }
  if (dropped) log_warn(what, ": ", dropped, " identical pairs dropped");
  return out;
}

void load_data(Run& r) {
  const StageArgs& a = r.a;
  ReadOptions ro;
  ro.policy = a.bad_record;
  std::vector<ReadReport> reports;
  if (a.stage == Stage::SFT) {
    auto train = load_sft_mixture(specs_of(a.train_datasets), a.seed, ro, &reports);
    log_reports(reports, "train data");
    std::vector<SftExample> eval;
    if (!a.eval_datasets.empty()) {
      reports.clear();
      eval = load_sft_mixture(specs_of(a.eval_datasets), a.seed, ro, &reports);
      log_reports(reports, "eval data");
    } else if (a.eval_split_ratio > 0) {
      std::tie(train, eval) = train_test_split(train, a.eval_split_ratio, a.seed);
    }
    for (const auto& e : train) r.sft_train.push_back(tokenize_sft(r.tok, e.prompt, e.answer, e.origin));
    for (const auto& e : eval) r.sft_eval.push_back(tokenize_sft(r.tok, e.prompt, e.answer, e.origin));
    // Examples whose prompt fills max_length have nothing to learn from: drop them, counted.
    for (auto* set : {&r.sft_train, &r.sft_eval}) {
      const size_t before = set->size();
      std::erase_if(*set, [&](const SftSample& s) { return s.label_begin >= a.max_length; });
      if (set->size() != before)
        log_warn("sft: ", before - set->size(), " examples dropped: their prompt alone fills "
                 "max_length ", a.max_length);
    }
    return;
  }
  auto to_pairs = [&](const std::vector<SafeRlhfRecord>& recs) {
    std::vector<PairSample> out;
    for (const auto& rec : recs) {
      if (a.stage == Stage::RM) {
        const PreferencePair p = helpfulness_pair(rec);
        out.push_back(tokenize_pair(r.tok, p.prompt, p.better, p.worse, p.origin));
      } else {
        const SafetyPair p = harmlessness_pair(rec);
        PairSample s = tokenize_pair(r.tok, p.prompt, p.safer, p.unsafer, p.origin);
        s.a_safe = p.is_safer_safe;
        s.b_safe = p.is_unsafer_safe;
        out.push_back(std::move(s));
      }
    }
    return out;
  };
  auto train = load_safe_rlhf_mixture(specs_of(a.train_datasets), a.seed, ro, &reports);
  log_reports(reports, "train data");
  std::vector<SafeRlhfRecord> eval;
  if (!a.eval_datasets.empty()) {
    reports.clear();
    eval = load_safe_rlhf_mixture(specs_of(a.eval_datasets), a.seed, ro, &reports);
    log_reports(reports, "eval data");
  } else if (a.eval_split_ratio > 0) {
    std::tie(train, eval) = train_test_split(train, a.eval_split_ratio, a.seed);
  }
  if (a.stage == Stage::CM) {
    train = apply_inconsistent_pair_policy(std::move(train), a.inconsistent_pairs, "train data");
    if (!eval.empty())
      eval = apply_inconsistent_pair_policy(std::move(eval), a.inconsistent_pairs, "eval data");
  }
  r.pair_train = drop_identical(to_pairs(train), a.max_length, "train data");
  r.pair_eval = drop_identical(to_pairs(eval), a.max_length, "eval data");
}

nlohmann::json run_config(const StageArgs& a) {
  nlohmann::json j;
  j["model_name_or_path"] = a.model_name_or_path;
  j["train_datasets"] = a.train_datasets;
  j["eval_datasets"] = a.eval_datasets;
  j["eval_split_ratio"] = a.eval_split_ratio;
  j["max_length"] = a.max_length;
  j["epochs"] = a.epochs;
  j["per_device_train_batch_size"] = a.per_device_train_batch_size;
  j["gradient_accumulation_steps"] = a.gradient_accumulation_steps;
  j["learning_rate"] = a.learning_rate;
  j["lr_scheduler_type"] = int(a.lr_scheduler_type);
  j["lr_warmup_ratio"] = a.lr_warmup_ratio;
  j["weight_decay"] = a.weight_decay;
  j["max_grad_norm"] = a.max_grad_norm;
  j["seed"] = a.seed;
  j["loss_type"] = int(a.score_loss.loss_type);
  j["regularization"] = a.score_loss.regularization;
  return j;
}

// Host end scores of both halves of a pair batch.
struct PairScores {
  std::vector<float> a, b;           // end scores [B]
  std::vector<float> all_a, all_b;   // per-token scores [B*W] (token-wise only)
};

PairScores score_pairs(Run& r, const PairBatch& pb, bool per_token, OwnedTensor& scores,
                       OwnedTensor& ends) {
  const int64_t R = pb.rows, W = pb.width, B = pb.pairs;
  scores = OwnedTensor(DType::F32, Shape{R, W}, r.ctx.device());
  ends = OwnedTensor(DType::F32, Shape{R}, r.ctx.device());
  r.m->forward(pb.batch());
  r.m->scores(scores, ends);
  const std::vector<float> e = to_host_f32(ends);
  PairScores ps;
  ps.a.assign(e.begin(), e.begin() + B);
  ps.b.assign(e.begin() + B, e.end());
  if (per_token) {
    const std::vector<float> s = to_host_f32(scores);
    ps.all_a.assign(s.begin(), s.begin() + B * W);
    ps.all_b.assign(s.begin() + B * W, s.end());
  }
  return ps;
}

TokenPairBatch token_pairs(const PairBatch& pb, const PairScores& ps) {
  const int64_t B = pb.pairs, W = pb.width;
  TokenPairBatch t;
  t.batch = B;
  t.length = W;
  t.scores_a = ps.all_a;
  t.scores_b = ps.all_b;
  t.ids_a = std::span<const int32_t>(pb.host_tokens.data(), size_t(B * W));
  t.ids_b = std::span<const int32_t>(pb.host_tokens.data() + B * W, size_t(B * W));
  t.end_a = std::span<const int64_t>(pb.end_index.data(), size_t(B));
  t.end_b = std::span<const int64_t>(pb.end_index.data() + B, size_t(B));
  return t;
}

// One micro-batch: forward, loss, backward (scaled). Returns the loss and the metrics to log.
struct MicroOut {
  double loss = 0.0;
  Values values;  // averaged over the micro-batches of a step
  int64_t tokens = 0;
};

// idx: this rank's slice of the global micro-batch (may be empty on a tail); the loss is
// scaled by the rank's share of the global label tokens (SFT) or pairs (RM/CM), and the
// values come back as weighted means over all ranks.
MicroOut train_micro(Run& r, std::span<const size_t> idx, float scale) {
  const StageArgs& a = r.a;
  MicroOut out;
  if (a.stage == Stage::SFT) {
    std::vector<SftSample> s;
    for (size_t i : idx) s.push_back(r.sft_train[i]);
    std::optional<SftBatch> b;
    if (!s.empty()) b = make_sft_batch(s, r.layout);
    const double weight = b ? double(b->label_tokens) : 0.0;
    const double share = data_parallel_share(a.comm, weight);
    if (b && weight > 0) {
      r.m->forward(b->batch());
      out.loss = r.m->cross_entropy(b->targets);
      r.m->cross_entropy_backward(scale * float(share));
    } else {
      join_sharded_pass(*r.m, true);  // the other ranks' pass is a collective under sharding
    }
    out.values = {{"loss", out.loss}};
    out.tokens = b ? b->valid_tokens : 0;
    std::vector<double> sums{double(out.tokens)};
    reduce_weighted(a.comm, out.values, weight, sums);
    out.loss = out.values.front().second;
    out.tokens = int64_t(sums[0]);
    return out;
  }
  std::vector<PairSample> s;
  for (size_t i : idx) s.push_back(r.pair_train[i]);
  const double weight = double(s.size());
  const double share = data_parallel_share(a.comm, weight);
  if (s.empty()) {  // nothing on this rank in the epoch's tail: join the collectives only
    join_sharded_pass(*r.m, true);
    out.values = a.stage == Stage::RM
                     ? Values{{"loss", 0}, {"accuracy", 0}, {"reward_mean", 0}, {"reward_std", 0}}
                     : Values{{"loss", 0}, {"accuracy", 0}, {"sign_accuracy", 0}, {"cost_mean", 0}};
    std::vector<double> sums{0.0};
    reduce_weighted(a.comm, out.values, 0.0, sums);
    out.loss = out.values.front().second;
    out.tokens = int64_t(sums[0]);
    return out;
  }
  scale *= float(share);
  const PairBatch pb = make_pair_batch(s, r.layout);
  const bool tw = a.score_loss.loss_type == ScoreLossType::TokenWise;
  OwnedTensor scores, ends;
  const PairScores ps = score_pairs(r, pb, tw, scores, ends);
  const double reg = a.score_loss.regularization;
  std::vector<float> ga, gb;
  if (a.stage == Stage::RM) {
    RewardLoss l = tw ? reward_loss_tokenwise(token_pairs(pb, ps), reg)
                      : reward_loss(ps.a, ps.b, reg);
    out.loss = l.loss;
    out.values = {{"loss", l.loss}, {"accuracy", l.accuracy}, {"reward_mean", l.reward.mean},
                  {"reward_std", l.reward.std}};
    ga = std::move(l.grad_better);
    gb = std::move(l.grad_worse);
  } else {
    CostLoss l = tw ? cost_loss_tokenwise(token_pairs(pb, ps), pb.a_safe, pb.b_safe, reg)
                    : cost_loss(ps.a, ps.b, pb.a_safe, pb.b_safe, reg);
    out.loss = l.loss;
    out.values = {{"loss", l.loss}, {"accuracy", l.accuracy}, {"sign_accuracy", l.sign_accuracy},
                  {"cost_mean", l.cost.mean}};
    ga = std::move(l.grad_safer);
    gb = std::move(l.grad_unsafer);
  }
  std::vector<float> g(ga.size() + gb.size());
  for (size_t i = 0; i < ga.size(); ++i) g[i] = ga[i] * scale;
  for (size_t i = 0; i < gb.size(); ++i) g[ga.size() + i] = gb[i] * scale;
  // Sequence-wise: gradients of the 2B end scores; token-wise: of all [2B, W] scores.
  if (tw) {
    r.ctx.copy(scores, Tensor(g.data(), DType::F32, Shape{pb.rows, pb.width}, Device::CPU));
    r.m->scores_backward(scores, Tensor{});
  } else {
    r.ctx.copy(ends, Tensor(g.data(), DType::F32, Shape{pb.rows}, Device::CPU));
    r.m->scores_backward(Tensor{}, ends);
  }
  std::vector<double> sums{double(pb.valid_tokens)};
  reduce_weighted(a.comm, out.values, weight, sums);
  out.loss = out.values.front().second;
  out.tokens = int64_t(sums[0]);
  return out;
}

// Evaluation over the whole eval set; the values carry "eval_" prefixes.
Values evaluate(Run& r, int64_t step) {
  const StageArgs& a = r.a;
  const size_t n = r.eval_size();
  if (n == 0) return {};
  const size_t bs = size_t(a.per_device_eval_batch_size);
  if (a.stage == Stage::SFT) {
    // Eval batches go round-robin over the ranks; sums are reduced.
    double sum = 0.0;
    int64_t count = 0;
    for (size_t i = bs * size_t(rank_of(a.comm)); i < n + bs * size_t(rank_of(a.comm));
         i += bs * size_t(ranks_of(a.comm))) {
      if (i >= n) {  // a round in which this rank has no batch (sharding: join the forward)
        join_sharded_pass(*r.m, false);
        continue;
      }
      const size_t e = std::min(n, i + bs);
      const SftBatch b = make_sft_batch(
          std::span<const SftSample>(r.sft_eval.data() + i, e - i), r.layout);
      r.m->forward(b.batch());
      sum += r.m->cross_entropy(b.targets) * double(b.label_tokens);
      count += b.label_tokens;
    }
    if (a.comm && a.comm->distributed()) {
      double v[2] = {sum, double(count)};
      a.comm->all_reduce(v, ReduceOp::Sum);
      sum = v[0];
      count = int64_t(v[1]);
    }
    const double loss = sum / double(count);
    return {{"eval_loss", loss}, {"eval_perplexity", std::exp(loss)}};
  }
  // Each rank scores its round-robin share of the batches into the full score vectors, which
  // a sum across ranks completes (every other entry is 0); labels come from the data.
  std::vector<double> scored(2 * n, 0.0);
  std::vector<float> sa(n), sb(n);
  std::vector<uint8_t> la, lb;
  for (size_t i = 0; i < n; ++i) {
    la.push_back(r.pair_eval[i].a_safe);
    lb.push_back(r.pair_eval[i].b_safe);
  }
  for (size_t i = bs * size_t(rank_of(a.comm)); i < n + bs * size_t(rank_of(a.comm));
       i += bs * size_t(ranks_of(a.comm))) {
    if (i >= n) {  // a round in which this rank has no batch (sharding: join the forward)
      join_sharded_pass(*r.m, false);
      continue;
    }
    const size_t e = std::min(n, i + bs);
    const PairBatch pb =
        make_pair_batch(std::span<const PairSample>(r.pair_eval.data() + i, e - i), r.layout);
    OwnedTensor scores, ends;
    const PairScores ps = score_pairs(r, pb, false, scores, ends);
    for (size_t k = 0; k < e - i; ++k) {
      scored[i + k] = ps.a[k];
      scored[n + i + k] = ps.b[k];
    }
  }
  if (a.comm) a.comm->all_reduce(scored, ReduceOp::Sum);
  for (size_t i = 0; i < n; ++i) {
    sa[i] = float(scored[i]);
    sb[i] = float(scored[n + i]);
  }
  const double reg = a.score_loss.regularization;
  if (a.stage == Stage::RM) {
    const RewardLoss l = reward_loss(sa, sb, reg);
    return {{"eval_loss", l.loss}, {"eval_accuracy", l.accuracy},
            {"eval_reward_mean", l.reward.mean}, {"eval_reward_std", l.reward.std},
            {"eval_better_mean", l.better_mean}, {"eval_worse_mean", l.worse_mean}};
  }
  const CostLoss l = cost_loss(sa, sb, la, lb, reg);
  plot::Group safe{"safe", {}}, unsafe{"unsafe", {}};
  for (size_t i = 0; i < sa.size(); ++i) {
    (la[i] ? safe : unsafe).values.push_back(sa[i]);
    (lb[i] ? safe : unsafe).values.push_back(sb[i]);
  }
  const std::string png = cat(a.output_dir, "/eval/cost-histogram-step-", step, ".png");
  if (is_root(a.comm)) {
    fs::create_directories(a.output_dir + "/eval");
    plot::histogram(png, cat("eval end costs, step ", step), "cost (CM end score; > 0: unsafe)",
                    {safe, unsafe});
  }
  if (!l.inconsistent_pairs.empty()) {
    std::string which;
    for (size_t k = 0; k < std::min<size_t>(5, l.inconsistent_pairs.size()); ++k)
      which += (k ? ", " : "") + r.pair_eval[size_t(l.inconsistent_pairs[k])].origin;
    log_warn("cm eval: ", l.inconsistent_pairs.size(), " inconsistent pairs (safer labelled "
             "unsafe, unsafer labelled safe): ", which,
             l.inconsistent_pairs.size() > 5 ? ", ..." : "");
  }
  log_info("cm eval: cost histogram written to ", png);
  return {{"eval_loss", l.loss},
          {"eval_accuracy", l.accuracy},
          {"eval_sign_accuracy", l.sign_accuracy},
          {"eval_cost_mean", l.cost.mean},
          {"eval_cost_std", l.cost.std},
          {"eval_safer_mean", l.safer_mean},
          {"eval_unsafer_mean", l.unsafer_mean},
          {"eval_inconsistent_pairs", double(l.inconsistent_pairs.size())}};
}

void check_args(const StageArgs& a) {
  BEAVER_CHECK(!a.model_name_or_path.empty(), "train ", stage_name(a.stage),
               ": --model_name_or_path is required");
  BEAVER_CHECK(!a.train_datasets.empty(), "train ", stage_name(a.stage),
               ": --train_datasets is required");
  BEAVER_CHECK(!a.output_dir.empty(), "train ", stage_name(a.stage), ": --output_dir is required");
  BEAVER_CHECK(a.max_length >= 2, "--max_length must be >= 2, got ", a.max_length);
  BEAVER_CHECK(a.epochs >= 1, "--epochs must be >= 1, got ", a.epochs);
  BEAVER_CHECK(a.per_device_train_batch_size >= 1, "--per_device_train_batch_size must be >= 1");
  BEAVER_CHECK(a.per_device_eval_batch_size >= 1, "--per_device_eval_batch_size must be >= 1");
  BEAVER_CHECK(a.gradient_accumulation_steps >= 1, "--gradient_accumulation_steps must be >= 1");
  BEAVER_CHECK(a.learning_rate >= 0 && std::isfinite(a.learning_rate),
               "--learning_rate must be a finite number >= 0");
  BEAVER_CHECK(a.lr_warmup_ratio >= 0 && a.lr_warmup_ratio <= 1,
               "--lr_warmup_ratio must be in [0, 1], got ", a.lr_warmup_ratio);
  BEAVER_CHECK(a.weight_decay >= 0, "--weight_decay must be >= 0");
  BEAVER_CHECK(a.eval_split_ratio >= 0 && a.eval_split_ratio < 1,
               "--eval_split_ratio must be in [0, 1)");
  BEAVER_CHECK(a.save_interval >= 0 && a.eval_interval >= 0 && a.max_steps >= 0 &&
                   a.log_interval >= 1,
               "--save_interval, --eval_interval, --max_steps must be >= 0, --log_interval >= 1");
}

}  // namespace

model::LlamaOptions stage_model_options(const StageArgs& a) {
  const bool score = a.stage != Stage::SFT;
  const int64_t rows_per = score ? 2 : 1;  // a pair is two rows
  model::LlamaOptions mo;
  mo.head = score ? model::Head::Score : model::Head::LM;
  mo.max_batch = rows_per * std::max(a.per_device_train_batch_size, a.per_device_eval_batch_size);
  mo.max_seq = a.max_length;
  mo.training = true;
  mo.zero_stage = a.zero_stage;  // run_stage adds the communicator
  return mo;
}

OptimizerConfig stage_optimizer_config(const StageArgs& a, int64_t total_steps) {
  OptimizerConfig oc;
  oc.schedule.kind = a.lr_scheduler_type;
  oc.schedule.base_lr = a.learning_rate;
  oc.schedule.warmup_ratio = a.lr_warmup_ratio;
  oc.schedule.total_steps = total_steps;
  oc.weight_decay = a.weight_decay;
  oc.beta1 = float(a.adam_beta1);
  oc.beta2 = float(a.adam_beta2);
  oc.max_grad_norm = a.max_grad_norm;
  oc.accumulation = a.gradient_accumulation_steps;
  oc.comm = a.comm;
  oc.zero_stage = a.zero_stage;
  return oc;
}

StageResult run_stage(const StageArgs& args) {
  check_args(args);
  check_zero_stage(args.zero_stage);
  StageArgs a = args;
  const bool root = is_root(a.comm);
  a.per_device_train_batch_size = per_device_batch(a.train_batch_size, a.per_device_train_batch_size,
                                                   a.gradient_accumulation_steps, ranks_of(a.comm));
  const std::string name(stage_name(a.stage));
  const std::string ckpt_root = a.output_dir + "/checkpoints";

  // ---- model config and tokenizer ----
  model::ModelKind stored_kind{};
  model::LlamaConfig cfg = model::checkpoint_config(a.model_name_or_path, &stored_kind);
  if (a.stage == Stage::SFT)
    BEAVER_CHECK(stored_kind == model::ModelKind::CausalLM, a.model_name_or_path,
                 ": holds a score model; SFT needs a causal LM");
  model::Tokenizer tok = model::load_model_tokenizer(a.model_name_or_path, cfg, "train " + name);
  if (cfg.max_position_embeddings > 0 && a.max_length > cfg.max_position_embeddings) {
    log_warn("train ", name, ": --max_length ", a.max_length, " exceeds the model's "
             "max_position_embeddings ", cfg.max_position_embeddings, "; using ",
             cfg.max_position_embeddings);
    a.max_length = cfg.max_position_embeddings;
  }

  // ---- output folder: fresh or resumed ----
  const bool has_ckpt = !latest_checkpoint(ckpt_root).empty();
  if (a.resume && !has_ckpt)
    BEAVER_FAIL("train ", name, " --resume: nothing to resume, ", ckpt_root,
                " holds no checkpoint; run without --resume to start afresh");
  BEAVER_CHECK(a.resume || !has_ckpt, a.output_dir, ": holds checkpoints of an earlier run; "
               "pass --resume to continue it or choose another --output_dir");
  BEAVER_CHECK(a.resume || !fs::exists(a.output_dir + "/beaver.json"), a.output_dir,
               ": already holds a final model; choose another --output_dir");
  fs::create_directories(a.output_dir);

  Context ctx = a.use_cuda ? Context::cuda(a.comm ? a.comm->local_rank() : 0)
                           : Context::cpu(a.threads);
  if (a.use_cuda && a.comm) a.comm->use_cuda(ctx.device_index());
  Run r{a, std::move(ctx), std::move(tok), nullptr, {}, {}, {}, {}, {}, {}, nullptr};
  r.layout.max_length = a.max_length;
  r.layout.pad_id = r.tok.pad_id() >= 0 ? r.tok.pad_id() : r.tok.eos_id();
  r.layout.vocab_size = cfg.vocab_size;
  r.layout.device = r.ctx.device();
  r.layout.context = &r.ctx;
  load_data(r);
  BEAVER_CHECK(r.train_size() > 0, "train ", name, ": no usable training examples");

  const bool score = a.stage != Stage::SFT;
  model::LlamaOptions mo = stage_model_options(a);
  mo.comm = a.comm;  // stages 2-3: the model shards its gradients (and parameters) itself
  r.m = std::make_unique<model::LlamaModel>(r.ctx, cfg, mo);
  model::load_weights(*r.m, a.model_name_or_path, a.seed);

  // ---- schedule ----
  const int64_t n = int64_t(r.train_size());
  const int64_t bs = a.per_device_train_batch_size;
  const int64_t gbs = bs * ranks_of(a.comm);  // the global micro-batch
  const int64_t per_epoch = (n + gbs - 1) / gbs;
  const int64_t total_micro = per_epoch * a.epochs;
  const int64_t accum = a.gradient_accumulation_steps;
  // Optimizer steps of the run: the data's (epochs x batches), capped by --max_steps, which
  // then sizes the warmup, the decay and the progress line (as HF's Trainer does).
  const int64_t planned_steps = (total_micro + accum - 1) / accum;
  const int64_t total_steps = a.max_steps > 0 ? std::min(planned_steps, a.max_steps) : planned_steps;
  const OptimizerConfig oc = stage_optimizer_config(a, total_steps);
  Optimizer opt(*r.m, oc);
  NonfiniteGuard guard(cat("train ", name), a.nonfinite);
  opt.set_guard(&guard);

  TrainerProgress prog;
  prog.stage = name;
  prog.seed = a.seed;
  prog.run_config = run_config(args);
  r.metrics_path = a.output_dir + "/metrics.jsonl";
  bool resumed = false;
  if (a.resume) {
    BEAVER_CHECK(load_trainer_state(ckpt_root, *r.m, opt, prog), "train ", name,
                 " --resume: no usable checkpoint in ", ckpt_root);
    resumed = true;
    if (opt.step() >= total_steps && fs::exists(a.output_dir + "/beaver.json")) {
      // The run is complete (a --max_steps or all epochs): nothing to train, nothing to write.
      log_info("train ", name, ": the run in ", a.output_dir, " has already reached step ",
               opt.step(), " of ", total_steps, "; nothing to do (raise --max_steps to go on)");
      StageResult done;
      done.steps = opt.step();
      done.final_model_dir = a.output_dir;
      return done;
    }
    if (root) truncate_lines(r.metrics_path, prog.metrics_lines);
  } else if (root && fs::exists(r.metrics_path)) {
    fs::remove(r.metrics_path);
  }
  if (a.comm) a.comm->barrier();  // no rank reads the output folder after this
  // Only rank 0 writes the records (the others keep them in memory).
  r.log = std::make_unique<MetricsLog>(root ? r.metrics_path : std::string(),
                                       oc.schedule.total_steps);
  log_info("train ", name, ": ", n, " training ", score ? "pairs" : "examples", ", ",
           r.eval_size(), " eval; ", per_epoch, " micro-batches per epoch",
           ranks_of(a.comm) > 1 ? cat(" (", ranks_of(a.comm), " ranks x ", bs, ", zero stage ",
                                      a.zero_stage, ", collectives ", a.comm->backend(), ")")
                                : std::string(), ", ",
           oc.schedule.total_steps, " optimizer steps, max_length ", a.max_length);

  StageResult res;
  auto save_state = [&]() {
    prog.metrics_lines = root ? count_lines(r.metrics_path) : 0;
    save_trainer_state(ckpt_root, *r.m, opt, prog, a.model_name_or_path, a.keep_checkpoints,
                       a.comm);
  };
  auto run_eval = [&]() {
    const Values v = evaluate(r, opt.step());
    if (v.empty()) return;
    Values rec = v;
    rec.emplace_back("epoch", double(prog.epoch));
    r.log->record(opt.step(), rec);
    for (const auto& [k, x] : v) res.eval[k] = x;
    log_info("eval ", name, " step ", opt.step(), ": ", r.log->progress_line(opt.step(), v, 0));
  };

  Timer timer;
  int64_t window_tokens = 0;
  double window_start = 0.0;
  Values step_sum;
  int64_t step_micro = 0;
  bool first_step = true, stop = false;
  int interrupted = 0;  // the signal that stopped the run early (0: none)
  // A stop request seen by any rank stops them all: the ranks agree after every step.
  auto stop_signal = [&]() -> int {
    int sig = a.stop ? a.stop->received() : 0;
    if (a.comm && a.comm->distributed()) {
      const double ranks_stopping = a.comm->all_reduce(sig != 0 ? 1.0 : 0.0, ReduceOp::Sum);
      if (ranks_stopping > 0 && sig == 0) sig = SIGTERM;  // what mpirun forwards
    }
    return sig;
  };
  int64_t saved_at = resumed ? opt.step() : -1;
  const std::string micro_range = "train/" + name + "/micro_batch";  // profiler range
  if (opt.step() >= total_steps) stop = true;  // resumed at the end: no extra step
  for (; prog.epoch < a.epochs && !stop; ++prog.epoch, prog.index = 0) {
    const std::vector<size_t> order = shuffled_indices(size_t(n), a.seed, uint64_t(prog.epoch));
    while (prog.index < n && !stop) {
      const int64_t e = std::min(n, prog.index + gbs);
      const auto [sb, se] = rank_slice(size_t(prog.index), size_t(e), size_t(bs), rank_of(a.comm));
      const std::span<const size_t> idx(order.data() + sb, se - sb);
      const MicroOut mo_out = [&] {
        const ProfileRange range(micro_range.c_str());
        return train_micro(r, idx, opt.loss_scale());
      }();
      prog.index = e;
      ++prog.micro_batches;
      res.train_tokens += mo_out.tokens;
      window_tokens += mo_out.tokens;
      if (step_sum.empty()) step_sum = Values(mo_out.values.size(), {"", 0.0});
      for (size_t k = 0; k < mo_out.values.size(); ++k) {
        step_sum[k].first = mo_out.values[k].first;
        step_sum[k].second += mo_out.values[k].second;
      }
      ++step_micro;
      if (a.after_backward) a.after_backward(prog.micro_batches, *r.m, opt);
      for (const auto& [k, v] : mo_out.values) guard.observe(k, v);
      bool stepped = opt.micro_step();
      if (!stepped && prog.micro_batches == total_micro) stepped = opt.flush();
      if (!stepped) continue;
      if (guard.last_skipped()) {
        r.log->record(opt.step(), {{"skipped_steps", double(guard.skipped())}});
        step_sum.clear();
        step_micro = 0;
        continue;
      }

      Values rec;
      for (const auto& [k, v] : step_sum) rec.emplace_back(k, v / double(step_micro));
      const double loss = rec.front().second;
      if (first_step) res.first_loss = loss;
      first_step = false;
      res.last_loss = loss;
      rec.emplace_back("lr", opt.last_lr());
      rec.emplace_back("grad_norm", opt.last_grad_norm());
      rec.emplace_back("epoch", double(prog.epoch) + double(prog.index) / double(n));
      if (guard.skipped() > 0) rec.emplace_back("skipped_steps", double(guard.skipped()));
      r.log->record(opt.step(), rec);
      step_sum.clear();
      step_micro = 0;
      if (opt.step() % a.log_interval == 0 || prog.micro_batches == total_micro) {
        const double now = timer.elapsed_s();
        const double tps = now > window_start ? double(window_tokens) / (now - window_start) : 0;
        log_info(name, " ", r.log->progress_line(opt.step(), rec, tps));
        window_tokens = 0;
        window_start = now;
      }
      if (a.eval_interval > 0 && opt.step() % a.eval_interval == 0) run_eval();
      if (opt.step() >= total_steps) stop = true;
      if (!stop && (interrupted = stop_signal()) != 0) stop = true;
      if ((a.save_interval > 0 && opt.step() % a.save_interval == 0) || stop) {
        save_state();
        saved_at = opt.step();
      }
    }
    // eval_interval 0: after every complete epoch (also the one that ends the run).
    if (a.eval_interval == 0 && prog.index >= n && interrupted == 0) run_eval();
  }
  res.seconds = timer.elapsed_s();
  res.steps = opt.step();
  res.skipped_steps = guard.skipped();
  if (res.skipped_steps > 0)
    log_warn("train ", name, ": ", res.skipped_steps, " optimizer steps skipped for non-finite ",
             "values (--nonfinite skip)");
  if (interrupted != 0) {
    const std::string where = latest_checkpoint(ckpt_root);
    throw Interrupted(interrupted,
                      cat("train ", name, ": stopped by ", StopSignalGuard::name(interrupted),
                          " after step ", opt.step(), " of ", total_steps,
                          "; resumable checkpoint in ", where,
                          "; continue with the same command and --resume"));
  }
  if (saved_at != opt.step()) {
    prog.index = 0;  // the loop ended: epoch == epochs
    save_state();
  }
  if (a.write_final_model && !root && r.m->params_sharded())
    model::save_weights(*r.m, a.output_dir, DType::F32);  // joins rank 0's gather; writes nothing
  if (a.write_final_model && root) {
    // A resumed run replaces the final model an earlier (shorter, --max_steps) run wrote.
    if (resumed && fs::exists(a.output_dir + "/beaver.json")) {
      fs::remove(a.output_dir + "/beaver.json");
      fs::remove(a.output_dir + "/model.safetensors");
    }
    model::save_weights(*r.m, a.output_dir, DType::F32, a.model_name_or_path);
    log_info("train ", name, ": final model written to ", a.output_dir);
    res.final_model_dir = a.output_dir;
  }
  if (root && fs::exists(r.metrics_path)) {
    const auto panels = stage_curve_panels(r.metrics_path);
    if (!panels.empty()) {
      const std::string png = a.output_dir + "/curves.png";
      plot::line_panels(png, "optimizer step", panels);
      log_info("train ", name, ": curves written to ", png);
    }
  }
  log_info("train ", name, ": ", res.steps, " steps, ", res.train_tokens, " tokens in ",
           format_duration(res.seconds), " (", std::lround(res.tokens_per_s()), " tokens/s)");
  return res;
}

std::vector<plot::Panel> stage_curve_panels(const std::string& metrics_jsonl) {
  const auto series = plot::read_metrics(
      metrics_jsonl, "step",
      {"loss", "eval_loss", "accuracy", "eval_accuracy", "reward_mean", "eval_reward_mean",
       "cost_mean", "eval_cost_mean", "lr", "grad_norm"});
  std::vector<plot::Panel> panels;
  auto add = [&](const char* title, std::initializer_list<const char*> names) {
    plot::Panel p{title, {}};
    for (const char* n : names)
      for (const auto& s : series)
        if (s.name == n && !s.x.empty()) p.series.push_back(s);
    if (!p.series.empty()) panels.push_back(std::move(p));
  };
  add("loss", {"loss", "eval_loss"});
  add("accuracy", {"accuracy", "eval_accuracy"});
  add("mean reward", {"reward_mean", "eval_reward_mean"});
  add("mean cost", {"cost_mean", "eval_cost_mean"});
  add("learning rate", {"lr"});
  add("gradient norm", {"grad_norm"});
  return panels;
}

}  // namespace beaver::train
