// The memory planner (train/memory_plan.h) against what the CPU run then allocates: for
// models of every kind (LM and score head, training with and without recomputation,
// inference, tied embeddings), the plan's weights, gradients, activations + logits chunks
// equal the sizes of the model's arenas; the Adam moments equal the Optimizer's m and v at
// each zero stage's shard; the rollout KV cache and step buffers equal the engine's arena.
// Sharded models (stages 2 and 3, every rank of 2 and 3) and PPO-Lagrangian's six roles at
// stage 3 in both --zero3_generation modes (gathered: the generation copy and its engine;
// sharded: the engine on the sharded actor, no copy) allocate what the plan says.
// A run that does not fit is refused naming its largest item and a flag change that fits (a
// gathered copy that does not fit: `--zero3_generation sharded`); auto picks gathered only when
// it fits.
#include <gtest/gtest.h>

#include <span>

#include <cstdlib>
#include <map>
#include <string>

#include "csrc/context.h"
#include "model/engine.h"
#include "model/llama.h"
#include "model/loader.h"
#include "train/memory_plan.h"
#include "train/optimizer.h"
#include "train/rlhf.h"
#include "train/stages.h"
#include "train/zero.h"

namespace beaver::train {
namespace {

using model::Head;
using model::LlamaModel;
using model::LlamaOptions;

std::string golden_dir(const std::string& name) {
  const char* src = std::getenv("BEAVER_SOURCE_DIR");
  return std::string(src ? src : ".") + "/tests/data/golden/" + name;
}

// Items of one role of a plan, by name.
std::map<std::string, size_t> items_of(const MemoryPlan& p, const std::string& role) {
  std::map<std::string, size_t> m;
  for (const PlanItem& i : p.items)
    if (i.role == role) m[i.item] += i.bytes;
  return m;
}

PlanSetup one_role(const model::LlamaConfig& cfg, const LlamaOptions& o) {
  PlanSetup s;
  s.roles.push_back(PlanRole{"m", cfg, o});
  s.device_memory = size_t(1) << 40;
  return s;
}

struct Case {
  const char* fixture;
  LlamaOptions opts;
};

TEST(MemoryPlan, ArenasAllocateWhatThePlanPredicts) {
  Context ctx = Context::cpu(1);
  const Case cases[] = {
      {"gqa", {.head = Head::LM, .max_batch = 3, .max_seq = 16, .training = true}},
      {"gqa", {.head = Head::LM, .max_batch = 5, .max_seq = 9, .training = true, .recompute = true}},
      {"gqa", {.head = Head::Score, .max_batch = 6, .max_seq = 16, .training = true}},
      {"gqa", {.head = Head::LM, .max_batch = 2, .max_seq = 7, .training = false}},
      {"tied_llama3", {.head = Head::LM, .max_batch = 4, .max_seq = 12, .training = true,
                       .logits_chunk_rows = 5}},
      {"tied_llama3", {.head = Head::Score, .max_batch = 3, .max_seq = 8, .training = false}},
  };
  for (const Case& c : cases) {
    const model::LlamaConfig cfg = model::checkpoint_config(golden_dir(c.fixture));
    const std::string what = cat(c.fixture, c.opts.head == Head::LM ? " LM" : " score",
                                 c.opts.training ? " training" : " inference",
                                 c.opts.recompute ? " recompute" : "", " batch ",
                                 c.opts.max_batch, " x ", c.opts.max_seq);
    const LlamaModel::Memory want = LlamaModel::plan_memory(cfg, c.opts, Device::CPU);
    LlamaModel m(ctx, cfg, c.opts);
    const LlamaModel::Memory got = m.memory();
    EXPECT_EQ(want.params, got.params) << what;
    EXPECT_EQ(want.working, got.working) << what;
    EXPECT_EQ(want.grads, got.grads) << what;
    EXPECT_EQ(want.acts + want.logits, got.acts + got.logits) << what;
    EXPECT_GT(got.acts, 0u) << what;
    EXPECT_EQ(want.flat_elements, m.flat_params().numel()) << what;

    // The planner's items for this role are the same figures.
    const auto items = items_of(plan_memory(one_role(cfg, c.opts)), "m");
    EXPECT_EQ(items.at("weights"), got.params) << what;
    EXPECT_EQ(items.count("gradients") ? items.at("gradients") : 0, got.grads) << what;
    EXPECT_EQ(items.at("activations") + (items.count("logits chunks") ? items.at("logits chunks") : 0),
              got.acts + got.logits)
        << what;
    if (c.opts.training) {
      OptimizerConfig oc;
      Optimizer opt(m, oc);
      EXPECT_EQ(items.at("Adam moments"),
                size_t(opt.exp_avg().nbytes() + opt.exp_avg_sq().nbytes()) + 2 * sizeof(float))
          << what;
    } else {
      EXPECT_EQ(items.count("Adam moments"), 0u) << what;
    }
  }
}

TEST(MemoryPlan, OptimizerShardMatchesZeroStages) {
  // The moments the plan gives rank 0 of R ranks are the range ZeroShard hands the Optimizer.
  const model::LlamaConfig cfg = model::checkpoint_config(golden_dir("gqa"));
  const LlamaOptions o{.head = Head::LM, .max_batch = 2, .max_seq = 8, .training = true};
  const int64_t n = LlamaModel::plan_memory(cfg, o, Device::CPU).flat_elements;
  for (int stage = 0; stage <= 3; ++stage)
    for (int ranks : {1, 2, 3, 8}) {
      PlanSetup s = one_role(cfg, o);
      s.zero_stage = stage;
      s.ranks = ranks;
      const auto items = items_of(plan_memory(s), "m");
      const int64_t shard = stage >= 1 && ranks > 1 ? Partition{n, ranks}.count(0) : n;
      EXPECT_EQ(items.at("Adam moments"), size_t(shard) * 8 + 8) << "stage " << stage << ", "
                                                                   << ranks << " ranks";
      // Only stage 3 (a projection) shards the weights and gradients.
      const size_t full = LlamaModel::plan_memory(cfg, o, Device::CPU).params;
      if (stage == 3 && ranks > 1)
        EXPECT_LT(items.at("weights"), full / size_t(ranks) + 4096);
      else
        EXPECT_EQ(items.at("weights"), full);
    }
}

// A communicator that only names a rank of a larger job: enough to build a sharded model and
// its optimizer (neither makes a collective while it is built).
class RankOf final : public Communicator {
 public:
  RankOf(int rank, int size) : Communicator(rank, size) {}
  std::string backend() const override { return "test"; }
  void all_reduce(Context&, const Tensor&, ReduceOp) override { fail(); }
  void reduce_scatter(Context&, const Tensor&, const Partition&, ReduceOp) override { fail(); }
  void all_gather(Context&, const Tensor&, const Partition&) override { fail(); }
  void broadcast(Context&, const Tensor&, int) override { fail(); }
  void all_reduce(std::span<double>, ReduceOp) override { fail(); }
  void broadcast(std::string&, int) override { fail(); }
  void barrier() override { fail(); }
  [[noreturn]] void abort(const std::string& m, int) override { BEAVER_FAIL(m); }

 private:
  [[noreturn]] static void fail() { BEAVER_FAIL("RankOf: no collectives in this test"); }
};

TEST(MemoryPlan, ShardedArenasAllocateWhatThePlanPredicts) {
  // Stages 2 and 3 on every rank of 2 and 3: what the sharded model and its optimizer allocate
  // is the plan (the planner's items for rank 0), and the shards cover the flat vector.
  Context ctx = Context::cpu(1);
  for (const char* fixture : {"gqa", "tied_llama3"})
    for (Head head : {Head::LM, Head::Score})
      for (int stage : {2, 3})
        for (int ranks : {2, 3}) {
          const model::LlamaConfig cfg = model::checkpoint_config(golden_dir(fixture));
          const LlamaOptions base{.head = head, .max_batch = 2, .max_seq = 8, .training = true};
          int64_t covered = 0, n = 0;
          for (int rank = 0; rank < ranks; ++rank) {
            RankOf comm(rank, ranks);
            LlamaOptions o = base;
            o.zero_stage = stage;
            o.comm = &comm;
            const std::string what = cat(fixture, head == Head::LM ? " LM" : " score", " stage ",
                                         stage, " rank ", rank, " of ", ranks);
            LlamaModel m(ctx, cfg, o);
            LlamaOptions po = o;
            po.comm = nullptr;
            po.shard_ranks = ranks;
            po.shard_rank = rank;
            const LlamaModel::Memory want = LlamaModel::plan_memory(cfg, po, Device::CPU);
            const LlamaModel::Memory got = m.memory();
            EXPECT_EQ(want.params, got.params) << what;
            EXPECT_EQ(want.grads, got.grads) << what;
            EXPECT_EQ(want.gathered, got.gathered) << what;
            EXPECT_GT(got.gathered, 0u) << what;
            n = got.flat_elements;
            // Only the shard: gradients (and at stage 3 parameters) of about N / ranks.
            EXPECT_EQ(got.grads, size_t(m.flat_grads().numel()) * 4) << what;
            EXPECT_LT(m.flat_grads().numel(), n / ranks + 64) << what;
            if (stage == 3) {
              EXPECT_EQ(got.params, size_t(m.flat_params().numel()) * 4) << what;
              EXPECT_EQ(m.flat_params().numel(), m.flat_grads().numel()) << what;
            } else {
              EXPECT_EQ(m.flat_params().numel(), n) << what;
            }
            covered += m.flat_grads().numel();
            OptimizerConfig oc;
            oc.comm = &comm;
            oc.zero_stage = stage;
            Optimizer opt(m, oc);
            EXPECT_EQ(opt.exp_avg().numel(), m.flat_grads().numel()) << what;
            if (rank == 0) {
              PlanSetup s = one_role(cfg, base);
              s.roles[0].sharded_model = true;
              s.ranks = ranks;
              s.zero_stage = stage;
              const MemoryPlan plan = plan_memory(s);
              const auto items = items_of(plan, "m");
              EXPECT_EQ(items.at("weights"), got.params) << what;
              EXPECT_EQ(items.at("gradients"), got.grads) << what;
              EXPECT_EQ(items.at("Adam moments"),
                        size_t(opt.exp_avg().nbytes() + opt.exp_avg_sq().nbytes()) + 8)
                  << what;
              EXPECT_EQ(items_of(plan, "").at("communication buffers"), got.gathered) << what;
              EXPECT_FALSE(plan.projection) << what;
            }
          }
          EXPECT_EQ(covered, n) << fixture << " stage " << stage << " over " << ranks;
        }
}

TEST(MemoryPlan, EngineArenaMatchesRolloutItems) {
  Context ctx = Context::cpu(1);
  const model::LlamaConfig cfg = model::checkpoint_config(golden_dir("mha"));
  const LlamaOptions o{.head = Head::LM, .max_batch = 3, .max_seq = 10, .training = true};
  LlamaModel m(ctx, cfg, o);
  model::InferenceEngine engine(m, 24);
  const auto want = model::InferenceEngine::plan_memory(cfg, Device::CPU, 3, 10, 24);
  const auto got = engine.memory();
  EXPECT_EQ(want.kv_cache, got.kv_cache);
  EXPECT_EQ(want.total(), got.total());
  PlanSetup s = one_role(cfg, o);
  s.roles[0].engine_batch = 3;
  s.roles[0].engine_prompt = 10;
  s.roles[0].engine_total = 24;
  const auto items = items_of(plan_memory(s), "m");
  EXPECT_EQ(items.at("rollout KV cache"), got.kv_cache);
  EXPECT_EQ(items.at("rollout KV cache") + items.at("rollout step buffers") +
                items.at("logits chunks") + items.at("activations"),
            got.total() + m.memory().acts + m.memory().logits);
}

TEST(MemoryPlan, StageSetupIsTheModelTheStageBuilds) {
  StageArgs a;
  a.stage = Stage::RM;
  a.model_name_or_path = golden_dir("gqa");
  a.per_device_train_batch_size = 3;
  a.per_device_eval_batch_size = 5;
  a.max_length = 100000;  // clipped to max_position_embeddings, as run_stage does
  const PlanSetup s = stage_plan_setup(a, Device::CPU, 1);
  ASSERT_EQ(s.roles.size(), 1u);
  EXPECT_EQ(s.roles[0].options.head, Head::Score);
  EXPECT_EQ(s.roles[0].options.max_batch, 10);  // two rows per pair, the larger batch
  EXPECT_EQ(s.roles[0].options.max_seq, s.roles[0].config.max_position_embeddings);
}

// PPO-Lagrangian at stage 3 (its models' paths unused: the configs are given), max_length S,
// per-device prompt and training batch `batch`.
RlhfOptions stage3_ppo_lag(int64_t S, int64_t batch, Zero3Generation mode) {
  RlhfOptions o;
  o.algorithm = PpoAlgorithm::PpoLag;
  o.actor_model = o.reward_model = o.cost_model = "unused";
  o.ppo.max_length = S;
  o.ppo.per_device_prompt_batch_size = batch;
  o.ppo.per_device_train_batch_size = batch;
  o.zero_stage = 3;
  o.zero3_generation = mode;
  return o;
}

TEST(MemoryPlan, RlStageThreeIsTheShardedModelsTheTrainerBuilds) {
  // PPO-Lagrangian at stage 3 on 3 ranks, both --zero3_generation modes: every role's items are
  // what the model RlhfTrainer builds (the run's zero stage, the communicator) allocates on
  // rank 0; the rollout engine's arena is that of the engine a rollout runs (gathered: over the
  // actor's full inference copy, whose arenas are the "generation copy" item; sharded: over the
  // sharded actor itself, with no copy); the communication buffers are the six models' gathered
  // slots and unit gradient buffers (the actor's slots also serve its decode steps).
  Context ctx = Context::cpu(1);
  const model::LlamaConfig cfg = model::checkpoint_config(golden_dir("gqa"));
  for (const Zero3Generation mode : {Zero3Generation::Sharded, Zero3Generation::Gathered}) {
    const std::string how(zero3_generation_name(mode));
    const RlhfOptions o = stage3_ppo_lag(16, 2, mode);
    PlanSetup s = rlhf_plan_setup(o, Device::CPU, 3, [&](const std::string&) { return cfg; });
    s.device_memory = size_t(1) << 40;
    ASSERT_EQ(s.roles.size(), 6u);
    const MemoryPlan plan = plan_memory(s);
    EXPECT_FALSE(plan.projection) << how;
    RankOf comm(0, 3);
    size_t gathered = 0;
    for (const PlanRole& r : s.roles) {
      const std::string what = cat(r.name, ", ", how, " generation");
      LlamaOptions mo = r.options;
      mo.comm = &comm;
      mo.zero_stage = 3;
      LlamaModel m(ctx, cfg, mo);
      ASSERT_TRUE(m.params_sharded()) << what;
      const LlamaModel::Memory got = m.memory();
      const auto items = items_of(plan, r.name);
      EXPECT_EQ(items.at("weights"), got.params) << what;
      EXPECT_LT(got.params, LlamaModel::plan_memory(cfg, r.options, Device::CPU).params / 2)
          << what << ": the weights are sharded";
      EXPECT_EQ(items.count("gradients") ? items.at("gradients") : 0, got.grads) << what;
      EXPECT_EQ(items.at("activations"), got.acts) << what;
      gathered += got.gathered;
      if (mo.training) {
        OptimizerConfig oc;
        oc.comm = &comm;
        oc.zero_stage = 3;
        Optimizer opt(m, oc);
        EXPECT_EQ(items.at("Adam moments"),
                  size_t(opt.exp_avg().nbytes() + opt.exp_avg_sq().nbytes()) + 8) << what;
      }
      if (r.engine_batch > 0 && mode == Zero3Generation::Gathered) {
        LlamaModel copy(ctx, cfg, generation_copy_options(m.options()));
        const LlamaModel::Memory cm = copy.memory();
        EXPECT_EQ(items.at("generation copy"), cm.params + cm.acts + cm.logits) << what;
        model::InferenceEngine engine(copy, o.ppo.max_length);
        EXPECT_EQ(items.at("rollout KV cache"), engine.memory().kv_cache) << what;
        EXPECT_EQ(items.at("rollout step buffers"), engine.memory().other) << what;
        EXPECT_EQ(items.at("logits chunks"), got.logits + engine.memory().logits) << what;
      } else if (r.engine_batch > 0) {
        // The engine decodes on the sharded actor: no copy, its arena beside the actor's.
        EXPECT_EQ(items.count("generation copy"), 0u) << what;
        model::InferenceEngine engine(m, o.ppo.max_length);
        EXPECT_TRUE(engine.collective()) << what;
        EXPECT_EQ(items.at("rollout KV cache"), engine.memory().kv_cache) << what;
        EXPECT_EQ(items.at("rollout step buffers"), engine.memory().other) << what;
        EXPECT_EQ(items.at("logits chunks"), got.logits + engine.memory().logits) << what;
        size_t role_total = 0;
        for (const auto& [item, bytes] : items) role_total += bytes;
        EXPECT_EQ(role_total, got.params + got.working + got.grads + got.acts + got.logits +
                                  engine.memory().total() + items.at("Adam moments"))
            << what << ": nothing else is planned for the actor";
      } else {
        EXPECT_EQ(items.count("generation copy"), 0u) << what;
        EXPECT_EQ(items.count("logits chunks") ? items.at("logits chunks") : 0, got.logits)
            << what;
      }
    }
    EXPECT_EQ(items_of(plan, "").at("communication buffers"), gathered) << how;
  }
}

TEST(MemoryPlan, GatheredGenerationThatDoesNotFitNamesShardedGeneration) {
  // What happens to a 70B copy at CI size: a stage-3 PPO-Lag plan with the gathered copy, held
  // against a device between the two totals, is refused naming `--zero3_generation sharded`,
  // the sharded plan fits, and auto picks whichever fits (gathered first).
  const model::LlamaConfig cfg = model::checkpoint_config(golden_dir("gqa"));
  RlhfOptions o = stage3_ppo_lag(64, 4, Zero3Generation::Gathered);
  const auto config_of = [&](const std::string&) { return cfg; };
  PlanSetup gathered = rlhf_plan_setup(o, Device::CPU, 4, config_of);
  o.zero3_generation = Zero3Generation::Sharded;
  PlanSetup sharded = rlhf_plan_setup(o, Device::CPU, 4, config_of);
  gathered.device_memory = sharded.device_memory = size_t(1) << 40;
  const size_t g = plan_memory(gathered).total, sh = plan_memory(sharded).total;
  ASSERT_LT(sh, g) << "the copy costs memory";
  EXPECT_EQ(g - sh, items_of(plan_memory(gathered), "actor").at("generation copy"));
  gathered.device_memory = sharded.device_memory = sh + (g - sh) / 2;
  const MemoryPlan p = plan_memory(gathered);
  ASSERT_FALSE(p.fits());
  EXPECT_TRUE(plan_memory(sharded).fits());
  try {
    require_fits(p, standard_variants(gathered, "--per_device_train_batch_size"));
    FAIL() << "a run that does not fit was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("`--zero3_generation sharded`"), std::string::npos) << msg;
  }
  // --zero3_generation auto: gathered while the plan with the copy fits, else sharded; the
  // explicit modes stay as given; below stage 3 or on one rank no copy either way.
  RlhfOptions a = o;
  a.zero3_generation = Zero3Generation::Auto;
  std::string why;
  EXPECT_EQ(resolve_zero3_generation(a, Device::CPU, 4, g, &why, nullptr, config_of),
            Zero3Generation::Gathered);
  EXPECT_NE(why.find("auto: gathered"), std::string::npos) << why;
  EXPECT_EQ(resolve_zero3_generation(a, Device::CPU, 4, g - 1, &why, nullptr, config_of),
            Zero3Generation::Sharded);
  EXPECT_NE(why.find("auto: sharded"), std::string::npos) << why;
  EXPECT_EQ(resolve_zero3_generation(a, Device::CPU, 4, sh / 2, nullptr, nullptr, config_of),
            Zero3Generation::Sharded);
  for (const Zero3Generation m : {Zero3Generation::Sharded, Zero3Generation::Gathered}) {
    RlhfOptions e = o;
    e.zero3_generation = m;
    EXPECT_EQ(resolve_zero3_generation(e, Device::CPU, 4, 1, nullptr, nullptr, config_of), m);
  }
  RlhfOptions low = a;
  low.zero_stage = 2;
  EXPECT_EQ(resolve_zero3_generation(low, Device::CPU, 4, size_t(1) << 40, nullptr, nullptr,
                                     config_of),
            Zero3Generation::Sharded);
  EXPECT_EQ(resolve_zero3_generation(a, Device::CPU, 1, size_t(1) << 40, nullptr, nullptr,
                                     config_of),
            Zero3Generation::Sharded);
  // The plan of an auto setup is that of the mode it resolves to.
  EXPECT_EQ(items_of(plan_memory(rlhf_plan_setup(a, Device::CPU, 4, config_of)), "actor")
                .count("generation copy"),
            1u);

  // At stage 2 the suggestion is stage 3 with sharded generation (the copy would not fit).
  PlanSetup stage2 = gathered;
  stage2.zero_stage = 2;
  bool named = false;
  for (const PlanVariant& v : standard_variants(stage2, "--per_device_train_batch_size"))
    named = named || v.flags == "--zero_stage 3 --zero3_generation sharded";
  EXPECT_TRUE(named);
}

TEST(MemoryPlan, RefusesARunThatDoesNotFitNamingTheLargestItemAndAFix) {
  const model::LlamaConfig cfg = model::checkpoint_config(golden_dir("gqa"));
  PlanSetup s = one_role(cfg, {.head = Head::LM, .max_batch = 64, .max_seq = 256, .training = true});
  PlanSetup small = s;
  small.roles[0].options.max_batch = 8;
  const MemoryPlan fits_at_8 = plan_memory(small);
  s.device_memory = fits_at_8.total + 1024;
  const MemoryPlan p = plan_memory(s);
  ASSERT_FALSE(p.fits());
  EXPECT_EQ(p.largest().item, "activations");
  try {
    require_fits(p, standard_variants(s, "--per_device_train_batch_size"));
    FAIL() << "a run that does not fit was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("largest item is m activations"), std::string::npos) << msg;
    EXPECT_NE(msg.find("`--per_device_train_batch_size 8`"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("`--per_device_train_batch_size 16`"), std::string::npos) << msg;
  }
  small.device_memory = s.device_memory;
  EXPECT_NO_THROW(require_fits(plan_memory(small), {}));
}

TEST(MemoryPlan, ParsesSizes) {
  EXPECT_EQ(parse_bytes("80GB"), size_t(80e9));
  EXPECT_EQ(parse_bytes("141GiB"), size_t(141) << 30);
  EXPECT_EQ(parse_bytes("512MiB"), size_t(512) << 20);
  EXPECT_EQ(parse_bytes("1000"), 1000u);
  for (const char* bad : {"", "GB", "-1GB", "12XB", "0"})
    EXPECT_THROW(parse_bytes(bad), Error) << bad;
}

}  // namespace
}  // namespace beaver::train
