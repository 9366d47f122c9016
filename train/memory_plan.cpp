// The memory planner (memory_plan.h).
#include "train/memory_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "csrc/comm.h"
#include "csrc/context.h"
#include "csrc/device.h"
#include "csrc/error.h"
#include "model/engine.h"
#include "model/loader.h"
#include "train/distributed.h"
#include "train/rlhf.h"
#include "train/stages.h"
#include "train/zero.h"

namespace beaver::train {

namespace {

constexpr size_t kGiB = size_t(1) << 30;

// Elements of an n-element vector on the fullest rank (rank 0) when sharded over `ranks`.
int64_t shard_elems(int64_t n, int ranks) { return Partition{n, ranks}.count(0); }

size_t sharded_bytes(size_t bytes, int64_t elems, int ranks) {
  if (elems == 0) return bytes;
  return size_t(double(bytes) * double(shard_elems(elems, ranks)) / double(elems) + 0.5);
}

// Bytes of the largest unit stage 3 gathers at once (one decoder layer, or the embedding with
// the head and the final norm), in the dtype the ops read: the difference of two plans.
size_t gather_unit_bytes(const PlanRole& r, Device device) {
  model::LlamaConfig one = r.config, none = r.config;
  one.num_hidden_layers = 1;
  none.num_hidden_layers = 0;
  const auto m1 = model::LlamaModel::plan_memory(one, r.options, device);
  const auto m0 = model::LlamaModel::plan_memory(none, r.options, device);
  const size_t layer = m1.params - m0.params;
  const size_t unit = std::max(layer, m0.params);
  const model::PrecisionPlan prec = model::PrecisionPlan::for_device(device, r.options.training);
  return unit / dtype_size(prec.master) * dtype_size(prec.work);
}

}  // namespace

const PlanItem& MemoryPlan::largest() const {
  BEAVER_CHECK(!items.empty(), "memory plan: no items");
  return *std::max_element(items.begin(), items.end(),
                           [](const PlanItem& a, const PlanItem& b) { return a.bytes < b.bytes; });
}

MemoryPlan plan_memory(const PlanSetup& setup) {
  BEAVER_CHECK(setup.ranks >= 1, "memory plan: ranks must be >= 1, got ", setup.ranks);
  BEAVER_CHECK(setup.zero_stage >= 0 && setup.zero_stage <= 3,
               "memory plan: --zero_stage must be 0, 1, 2 or 3, got ", setup.zero_stage);
  MemoryPlan plan;
  plan.setup = setup;
  const Device dev = setup.device;
  const int R = setup.ranks;
  const bool stage3 = setup.zero_stage == 3 && R > 1;
  plan.projection = false;
  size_t gather = 0, gathered = 0, scratch = 0;
  for (const PlanRole& r : setup.roles) {
    const bool train = r.options.training;
    // A role whose trainer shards the model itself (stages 2-3) is planned as the model it
    // builds on rank 0 (the fullest: every unit's first slice); the others as the projection.
    model::LlamaOptions mo = r.options;
    mo.comm = nullptr;
    mo.zero_stage = r.sharded_model ? setup.zero_stage : 0;
    mo.shard_ranks = R;
    mo.shard_rank = 0;
    const bool projected = stage3 && !r.sharded_model;
    plan.projection = plan.projection || (setup.zero_stage == 3 && !r.sharded_model);
    const model::LlamaModel::Memory mm = model::LlamaModel::plan_memory(r.config, mo, dev);
    const int64_t N = mm.flat_elements;
    auto shard = [&](size_t b) { return projected ? sharded_bytes(b, N, R) : b; };
    const bool grads_sharded = r.sharded_model && setup.zero_stage >= 2 && R > 1;
    const model::PrecisionPlan prec = model::PrecisionPlan::for_device(dev, train);
    auto add = [&](const char* item, size_t bytes, std::string note = {}) {
      if (bytes > 0 || std::string(item) == "weights")
        plan.items.push_back(PlanItem{r.name, item, bytes, std::move(note)});
    };
    add("weights", shard(mm.params),
        cat(dtype_name(prec.master), train && prec.working_copy() ? " master" : "",
            stage3 ? ", sharded" : "", projected ? " (projection)" : ""));
    add("working copy", shard(mm.working), cat(dtype_name(prec.work), stage3 ? ", sharded" : ""));
    add("gradients", shard(mm.grads),
        cat(dtype_name(prec.grads), stage3 || grads_sharded ? ", sharded" : ", whole vector"));
    if (train) {
      // The Optimizer's pieces: per unit where the model shards its gradients, else stage 1's
      // contiguous ranges (also what a stage-2 optimizer uses on a model that does not).
      const int stage = r.sharded_model || setup.zero_stage < 2 ? setup.zero_stage : 1;
      const int64_t c = ZeroShard::state_elements(
          stage, R, 0, model::LlamaModel::unit_bounds(r.config, r.options.head, prec.master));
      add("Adam moments", size_t(c) * 2 * sizeof(float) + 2 * sizeof(float),
          c < N ? cat("m, v f32, shard of ", R) : std::string("m, v f32"));
    }
    std::string act_note;
    if (train) {
      model::LlamaOptions other = r.options;
      other.recompute = !other.recompute;
      const auto alt = model::LlamaModel::plan_memory(r.config, other, dev);
      act_note = cat(r.options.recompute ? "recomputation; without: " : "no recomputation; with: ",
                     format_bytes(alt.acts));
    }
    add("activations", mm.acts, cat("batch ", r.options.max_batch, " x ", r.options.max_seq,
                                    act_note.empty() ? "" : ", ", act_note));
    size_t logits = mm.logits;
    if (r.engine_batch > 0) {
      const auto em = model::InferenceEngine::plan_memory(r.config, dev, r.engine_batch,
                                                          r.engine_prompt, r.engine_total);
      logits += em.logits;
      add("rollout KV cache", em.kv_cache,
          cat("batch ", r.engine_batch, " x ", r.engine_total, " tokens"));
      add("rollout step buffers", em.other);
    }
    add("logits chunks", logits);
    if (r.engine_batch > 0 && r.sharded_model && stage3 && r.generation_copy) {
      // The rollout generates from a full inference copy of the sharded actor, gathered at the
      // start of each rollout and freed after it (rlhf.cpp, open_generation): its own arenas.
      // Without the copy the engine decodes on the sharded model: its slots, counted below.
      const auto gm = model::LlamaModel::plan_memory(
          r.config, generation_copy_options(r.options), dev);
      add("generation copy", gm.params + gm.acts + gm.logits,
          cat("full ", dtype_name(model::PrecisionPlan::for_device(dev, false).master),
              " actor for the rollout (freed after it) + its activations"));
    }
    if (projected) gather = std::max(gather, gather_unit_bytes(r, dev));
    gathered += mm.gathered;
    if (train)  // the attention backward's per-row statistics (the largest scratch user)
      scratch = std::max(scratch, size_t(r.options.max_batch * r.config.num_attention_heads *
                                         r.options.max_seq) * sizeof(float));
  }
  bool sharded_decode = false;  // an engine decodes through a sharded model's slots
  for (const PlanRole& r : setup.roles)
    sharded_decode = sharded_decode ||
                     (r.engine_batch > 0 && r.sharded_model && stage3 && !r.generation_copy);
  if (gathered > 0 || gather > 0)
    plan.items.push_back(PlanItem{"", "communication buffers", gathered + 2 * gather,
                                  cat(setup.zero_stage == 3
                                          ? (model::zero_prefetch_from_environment()
                                                 ? "three gathered units per model (prefetch)"
                                                 : "two gathered units per model")
                                                            : "one unit gradient buffer per "
                                                              "trained model",
                                      setup.zero_stage == 3 ? " + one unit gradient buffer per "
                                                              "trained model" : "",
                                      sharded_decode ? "; the actor's slots serve its decode too"
                                                     : "",
                                      gather > 0 ? " (in part a projection)" : "")});
  else if (R > 1)
    plan.items.push_back(PlanItem{"", "communication buffers", 0,
                                  "none: collectives run in place on the flat vectors"});
  plan.items.push_back(PlanItem{"", "workspace",
                                Context::planned_gemm_workspace_bytes(dev) + scratch,
                                dev == Device::CUDA ? "GEMM workspace + context scratch"
                                                    : "context scratch"});
  for (const PlanItem& i : plan.items) plan.total += i.bytes;
  plan.headroom = dev == Device::CUDA ? kGiB : 0;
  plan.device_memory = setup.device_memory;
  if (plan.device_memory == 0) {
    std::string why;
    BEAVER_CHECK(dev == Device::CPU || cuda_available(&why), "memory plan: cannot detect the CUDA "
                 "device's memory (", why, "); pass --device_memory, e.g. 80GB");
    plan.device_memory = dev == Device::CUDA ? device_total_memory(0) : host_total_memory();
  }
  return plan;
}

std::string format_plan_bytes(size_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f GiB", double(bytes) / double(kGiB));
  return bytes >= kGiB ? std::string(buf) : format_bytes(bytes);
}

std::string MemoryPlan::table() const {
  std::ostringstream os;
  os << "memory plan per rank: " << setup.ranks << (setup.ranks == 1 ? " rank" : " ranks")
     << ", zero stage " << setup.zero_stage << ", " << device_name(setup.device)
     << (projection ? " (stage 3 is not implemented for every role: a projection for those)" : "")
     << "\n";
  char line[256];
  std::snprintf(line, sizeof line, "  %-18s %-22s %12s  %s\n", "role", "item", "bytes", "");
  os << line;
  std::string cur = "\x01";
  size_t role_sum = 0;
  auto flush = [&] {
    if (cur != "\x01" && !cur.empty()) {
      std::snprintf(line, sizeof line, "  %-18s %-22s %12s\n", cur.c_str(), "= role total",
                    format_plan_bytes(role_sum).c_str());
      os << line;
    }
  };
  for (const PlanItem& i : items) {
    if (i.role != cur) {
      flush();
      cur = i.role;
      role_sum = 0;
    }
    role_sum += i.bytes;
    std::snprintf(line, sizeof line, "  %-18s %-22s %12s  %s\n",
                  i.role.empty() ? "(per rank)" : i.role.c_str(), i.item.c_str(),
                  format_plan_bytes(i.bytes).c_str(), i.note.c_str());
    os << line;
  }
  flush();
  os << "  total " << format_plan_bytes(total);
  if (headroom) os << " + " << format_plan_bytes(headroom) << " headroom (CUDA context, NCCL)";
  os << " of " << format_plan_bytes(device_memory) << ": "
     << (fits() ? "fits" : "does NOT fit") << "\n";
  return os.str();
}

void require_fits(const MemoryPlan& plan, const std::vector<PlanVariant>& variants) {
  if (plan.fits()) return;
  const PlanItem& big = plan.largest();
  // The mildest fitting change of each flag (variants come mildest first), three at most.
  std::string fixes;
  std::vector<std::string> used;
  int found = 0;
  for (const PlanVariant& v : variants) {
    const std::string flag = v.flags.substr(0, v.flags.rfind(' '));
    if (std::find(used.begin(), used.end(), flag) != used.end()) continue;
    PlanSetup s = v.setup;
    s.device_memory = plan.device_memory;
    if (!plan_memory(s).fits()) continue;
    used.push_back(flag);
    fixes += cat(found ? ", " : "", "`", v.flags, "`");
    if (++found == 3) break;
  }
  BEAVER_FAIL("memory plan: this run needs ", format_plan_bytes(plan.total + plan.headroom),
              " per rank but the device has ", format_plan_bytes(plan.device_memory),
              "; the largest item is ", big.role.empty() ? "" : big.role + " ", big.item, " (",
              format_plan_bytes(big.bytes), "). ",
              found ? "It would fit with " + fixes
                    : std::string("No single flag change of the usual ones makes it fit"),
              " (--dry_run prints the whole plan; --device_memory sets the size planned against)");
}

std::vector<PlanVariant> standard_variants(const PlanSetup& setup, const std::string& batch_flag) {
  std::vector<PlanVariant> out;
  bool all_sharded = true, copy = false;
  for (const PlanRole& r : setup.roles) {
    all_sharded = all_sharded && r.sharded_model;
    copy = copy || r.generation_copy;
  }
  // Generation from the sharded actor instead of a gathered copy (slower, no copy).
  PlanSetup no_copy = setup;
  for (PlanRole& r : no_copy.roles) r.generation_copy = false;
  if (copy && setup.zero_stage == 3) out.push_back({"--zero3_generation sharded", no_copy});
  for (int s = setup.zero_stage + 1; s <= (all_sharded ? 3 : 2) && setup.ranks > 1; ++s) {
    PlanSetup v = setup;
    v.zero_stage = s;
    out.push_back({cat("--zero_stage ", s), v});
    if (s == 3 && copy) {
      v.roles = no_copy.roles;
      out.push_back({"--zero_stage 3 --zero3_generation sharded", v});
    }
  }
  for (int k = 2; k <= 8; k *= 2) {
    PlanSetup v = setup;
    v.ranks = setup.ranks * k;
    v.zero_stage = std::max(2, std::min(setup.zero_stage, 2));
    out.push_back({cat("mpirun -np ", v.ranks, " ... --zero_stage 2"), v});
  }
  int64_t batch = 0, length = 0;
  for (const PlanRole& r : setup.roles) {
    batch = std::max(batch, r.options.max_batch);
    length = std::max(length, r.options.max_seq);
  }
  for (int64_t b = batch / 2; b >= 1; b /= 2) {
    PlanSetup v = setup;
    for (PlanRole& r : v.roles) {
      r.options.max_batch = std::max<int64_t>(1, r.options.max_batch * b / batch);
      if (r.engine_batch) r.engine_batch = std::max<int64_t>(1, r.engine_batch * b / batch);
    }
    out.push_back({cat(batch_flag, " ", b), v});
  }
  for (int64_t l = length / 2; l >= 16; l /= 2) {
    PlanSetup v = setup;
    for (PlanRole& r : v.roles) {
      r.options.max_seq = std::min(r.options.max_seq, l);
      if (r.engine_total) {
        r.engine_prompt = std::min(r.engine_prompt, l);
        r.engine_total = std::min(r.engine_total, l);
      }
    }
    out.push_back({cat("--max_length ", l), v});
  }
  return out;
}

size_t parse_bytes(const std::string& text) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (const std::exception&) {
    BEAVER_FAIL("--device_memory: '", text, "' is not a size (e.g. 80GB, 141GiB, 512MiB)");
  }
  const std::string unit = text.substr(pos);
  double scale = 0;
  for (const auto& [u, s] : std::initializer_list<std::pair<const char*, double>>{
           {"", 1}, {"B", 1}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
           {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", double(kGiB)},
           {"TiB", double(kGiB) * 1024}})
    if (unit == u) scale = s;
  BEAVER_CHECK(scale > 0 && std::isfinite(v) && v > 0 && v * scale < 1e18, "--device_memory: '",
               text, "' is not a positive size (units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)");
  return size_t(v * scale);
}

namespace {
model::LlamaConfig read_config(const ConfigOf& config_of, const std::string& path) {
  BEAVER_CHECK(!path.empty(), "memory plan: a model path is empty");
  return config_of ? config_of(path) : model::checkpoint_config(path);
}
}  // namespace

PlanSetup stage_plan_setup(const StageArgs& args, Device device, int ranks,
                           const ConfigOf& config_of) {
  const model::LlamaConfig cfg = read_config(config_of, args.model_name_or_path);
  StageArgs a = args;
  a.per_device_train_batch_size = per_device_batch(a.train_batch_size, a.per_device_train_batch_size,
                                                   a.gradient_accumulation_steps, ranks);
  if (cfg.max_position_embeddings > 0) a.max_length = std::min(a.max_length, cfg.max_position_embeddings);
  PlanSetup s;
  s.device = device;
  s.ranks = ranks;
  s.zero_stage = a.zero_stage;
  PlanRole role{std::string(stage_name(a.stage)), cfg, stage_model_options(a)};
  role.sharded_model = true;  // run_stage builds its model with the zero stage
  s.roles.push_back(role);
  return s;
}

PlanSetup rlhf_plan_setup(const RlhfOptions& o, Device device, int ranks,
                          const ConfigOf& config_of) {
  const PpoConfig& c = o.ppo;
  const int64_t mb = rlhf_micro_batch(c), S = c.max_length;
  auto role = [&](const char* name, const std::string& dir, model::Head head, bool training,
                  bool recompute) {
    model::LlamaOptions lo;
    lo.head = head;
    lo.max_batch = mb;
    lo.max_seq = S;
    lo.training = training;
    lo.recompute = training && recompute;
    PlanRole r{name, read_config(config_of, dir), lo};
    r.sharded_model = true;
    return r;
  };
  PlanSetup s;
  s.device = device;
  s.ranks = ranks;
  s.zero_stage = o.zero_stage;
  PlanRole actor = role("actor", o.actor_model, model::Head::LM, true, c.actor_gradient_checkpointing);
  // RlhfTrainer builds all six roles with the run's zero stage (sharded frozen roles too).
  actor.engine_batch = mb;
  actor.engine_prompt = S;
  actor.engine_total = S;
  actor.generation_copy = resolve_zero3_generation(o, device, ranks, 0, nullptr, nullptr,
                                                   config_of) == Zero3Generation::Gathered;
  s.roles.push_back(actor);
  s.roles.push_back(role("reference model", o.actor_model, model::Head::LM, false, false));
  s.roles.push_back(role("reward model", o.reward_model, model::Head::Score, false, false));
  if (!o.cost_model.empty())
    s.roles.push_back(role("cost model", o.cost_model, model::Head::Score, false, false));
  s.roles.push_back(role("reward critic",
                         o.reward_critic_model.empty() ? o.reward_model : o.reward_critic_model,
                         model::Head::Score, true, c.critic_gradient_checkpointing));
  if (o.algorithm == PpoAlgorithm::PpoLag)
    s.roles.push_back(role("cost critic",
                           o.cost_critic_model.empty() ? o.cost_model : o.cost_critic_model,
                           model::Head::Score, true, c.critic_gradient_checkpointing));
  return s;
}

Zero3Generation resolve_zero3_generation(const RlhfOptions& o, Device device, int ranks,
                                         size_t device_memory, std::string* why,
                                         Communicator* agree, const ConfigOf& config_of) {
  if (o.zero3_generation != Zero3Generation::Auto) return o.zero3_generation;
  if (o.zero_stage < 3 || ranks < 2) return Zero3Generation::Sharded;  // the engine on the actor
  RlhfOptions g = o;
  g.zero3_generation = Zero3Generation::Gathered;
  PlanSetup s = rlhf_plan_setup(g, device, ranks, config_of);
  s.device_memory = device_memory;
  const MemoryPlan p = plan_memory(s);
  bool fits = p.fits();
  if (agree && agree->distributed()) fits = agree->all_true(fits);
  if (why)
    *why = cat("--zero3_generation auto: ", fits ? "gathered" : "sharded", " (the plan with the "
               "actor's full generation copy needs ", format_plan_bytes(p.total + p.headroom),
               " per rank of ", format_plan_bytes(p.device_memory),
               fits ? ": it fits, one gather per rollout instead of one per decode step per unit"
                    : ": it does not fit, the rollouts generate from the sharded actor unit by "
                      "unit", ")");
  return fits ? Zero3Generation::Gathered : Zero3Generation::Sharded;
}

}  // namespace beaver::train
