// The LLaMA graph (see llama.h for the memory layout and the conventions). Every numeric step
// is an op from csrc/ops, so the same code runs on the CPU twins and the CUDA kernels.
#include "model/llama.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <optional>
#include <cstdio>
#include <sstream>

#include "csrc/log.h"
#include "csrc/ops/attention.h"
#include "csrc/ops/elementwise.h"
#include "csrc/ops/embedding.h"
#include "csrc/ops/gemm.h"
#include "csrc/ops/logprob.h"
#include "csrc/ops/rmsnorm.h"
#include "csrc/ops/rope.h"
#include "csrc/ops/swiglu.h"
#include "csrc/philox.h"

namespace beaver::model {

namespace {

std::string layer_name(int64_t l, const char* leaf) { return cat("model.layers.", l, ".", leaf); }

// Host ↔ device copies of small index tensors, ordered on the context's stream (a plain copy
// on the CPU). A download waits for the stream.
void upload_i32(const Context& ctx, const Tensor& dst, std::vector<int32_t>& host, int64_t n) {
  ctx.copy(dst.slice(0, n), Tensor(host.data(), DType::I32, Shape{n}, Device::CPU));
}
void download_i32(const Context& ctx, std::vector<int32_t>& host, const Tensor& src) {
  host.resize(size_t(src.numel()));
  ctx.copy(Tensor(host.data(), DType::I32, src.shape, Device::CPU), src);
}

// The whole arena as bytes, for a stream-ordered zero fill.
Tensor arena_bytes(const Arena& a) {
  return Tensor(a[0].data, DType::U8, Shape{int64_t(a.bytes())}, a.device());
}

}  // namespace

LlamaModel::LlamaModel(Context& ctx, const LlamaConfig& cfg, const LlamaOptions& opts)
    : ctx_(&ctx), cfg_(cfg), opts_(opts), prec_(PrecisionPlan::for_device(ctx.device(), opts.training)) {
  cfg.validate("LlamaModel");  // sizes positive, heads divisible, head_dim even, ...
  H_ = cfg.hidden_size;
  I_ = cfg.intermediate_size;
  L_ = cfg.num_hidden_layers;
  nh_ = cfg.num_attention_heads;
  nkv_ = cfg.num_key_value_heads;
  hd_ = cfg.head_dim;
  V_ = cfg.vocab_size;
  BEAVER_CHECK(opts.max_batch > 0 && opts.max_seq > 0, "LlamaModel: max_batch (",
               opts.max_batch, ") and max_seq (", opts.max_seq, ") must be positive");
  BEAVER_CHECK(!opts.recompute || opts.training,
               "LlamaModel: activation recomputation needs training = true");
  qdim_ = nh_ * hd_;
  kvdim_ = nkv_ * hd_;
  eps_ = float(cfg.rms_norm_eps);
  scale_ = float(1.0 / std::sqrt(double(hd_)));

  plan_params();
  {
    const auto handle = [&](const char* name) {
      const auto it = index_.find(name);
      return it == index_.end() ? kNoHandle : it->second;
    };
    final_norm_h_ = handle("model.norm.weight");
    lm_head_h_ = handle("lm_head.weight");
    score_w_h_ = handle("score_head.weight");
    score_b_h_ = handle("score_head.bias");
  }
  setup_shards();
  const auto& es = param_plan_.entries();
  if (params_sharded()) {
    // Only this rank's shard exists (shards_); the views point into gathered slots in use.
    pv_.assign(es.size(), Tensor{});
    wv_.assign(es.size(), Tensor{});
  } else {
    params_ = Arena(param_plan_, ctx.device());
    ctx.zero(arena_bytes(params_));
    for (size_t i = 0; i < es.size(); ++i) pv_.push_back(params_[i]);
  }
  if (params_sharded()) {
  } else if (prec_.working_copy()) {
    // Same element offsets as the master (flat index i ↔ master element i), so AdamW's lowp
    // output over the flat vector writes exactly these views.
    const int64_t n = num_flat();
    work_buf_ = Buffer(size_t(n) * dtype_size(prec_.work), ctx.device());
    auto* base = static_cast<uint8_t*>(work_buf_.data());
    for (size_t i = 0; i < es.size(); ++i)
      wv_.push_back(Tensor(base + es[i].offset / dtype_size(prec_.master) * dtype_size(prec_.work),
                           prec_.work,
                           es[i].shape, ctx.device()));
    sync_working_params();
  } else {
    wv_ = pv_;
  }
  if (opts.training && grads_sharded()) {
    gv_.assign(es.size(), Tensor{});  // open_grads points them into the unit buffer
  } else if (opts.training) {
    grads_ = Arena(param_plan_, ctx.device());
    ctx.zero(arena_bytes(grads_));
    for (size_t i = 0; i < es.size(); ++i) gv_.push_back(grads_[i]);
  }
  plan_acts();
  const std::vector<float> inv = ops::rope_inv_freq(int(hd_), cfg.rope_theta, cfg.rope_scaling);
  ctx.copy(inv_freq_, Tensor(const_cast<float*>(inv.data()), DType::F32,
                             Shape{int64_t(inv.size())}, Device::CPU));
  if (opts.head == Head::Score) ops::fill(ctx, ones_, 1.0f);
  host_ranges_.resize(size_t(opts.max_batch) * 2);
  host_idx_.resize(size_t(opts.max_batch));
  log_info(budget_summary());
  log_debug(budget());
}

void LlamaModel::plan_params() {
  param_plan_ = plan_param_entries(cfg_, opts_.head, prec_.master, &infos_);
  for (size_t i = 0; i < infos_.size(); ++i) index_[infos_[i].name] = i;  // handle = index
}

ArenaPlan LlamaModel::plan_param_entries(const LlamaConfig& cfg, Head head, DType master,
                                         std::vector<ParamInfo>* infos) {
  ArenaPlan plan;
  auto add = [&](const std::string& name, Shape s, bool is_norm = false, bool is_bias = false) {
    plan.add(name, master, s);
    if (infos) infos->push_back(ParamInfo{name, s, is_bias, is_norm});
  };
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
  const int64_t qdim = cfg.num_attention_heads * cfg.head_dim;
  const int64_t kvdim = cfg.num_key_value_heads * cfg.head_dim;
  add("model.embed_tokens.weight", {V, H});
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    add(layer_name(l, "input_layernorm.weight"), {H}, true);
    add(layer_name(l, "self_attn.q_proj.weight"), {qdim, H});
    add(layer_name(l, "self_attn.k_proj.weight"), {kvdim, H});
    add(layer_name(l, "self_attn.v_proj.weight"), {kvdim, H});
    add(layer_name(l, "self_attn.o_proj.weight"), {H, qdim});
    add(layer_name(l, "post_attention_layernorm.weight"), {H}, true);
    add(layer_name(l, "mlp.gate_proj.weight"), {I, H});
    add(layer_name(l, "mlp.up_proj.weight"), {I, H});
    add(layer_name(l, "mlp.down_proj.weight"), {H, I});
  }
  add("model.norm.weight", {H}, true);
  if (head == Head::LM) {
    if (!cfg.tie_word_embeddings) add("lm_head.weight", {V, H});
  } else {
    add("score_head.weight", {1, H});
    add("score_head.bias", {1}, false, true);
  }
  return plan;
}

ArenaPlan LlamaModel::plan_act_entries(const LlamaConfig& cfg, const LlamaOptions& opts,
                                       const PrecisionPlan& prec, ActHandles* out) {
  const int64_t T = opts.max_batch * opts.max_seq;
  const int64_t Bm = opts.max_batch;
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, L = cfg.num_hidden_layers;
  const int64_t nh = cfg.num_attention_heads, hd = cfg.head_dim, V = cfg.vocab_size;
  const int64_t qdim = nh * hd, kvdim = cfg.num_key_value_heads * hd;
  ArenaPlan p;
  ActHandles hs;
  std::vector<size_t>& resid_h = hs.resid;
  const int64_t n_resid = opts.training ? L + 1 : 1;
  const DType act = prec.act;
  for (int64_t l = 0; l < n_resid; ++l) resid_h.push_back(p.add(cat("resid.", l), act, {T, H}));
  const bool per_layer = opts.training && !opts.recompute;
  std::vector<ActHandles::Layer>& ah = hs.layers;
  for (int64_t l = 0; l < (per_layer ? L : 1); ++l) {
    const std::string s = per_layer ? cat(".L", l) : std::string(".shared");
    ah.push_back(ActHandles::Layer{
        p.add("xn1" + s, act, {T, H}), p.add("rstd1" + s, DType::F32, {T}),
        p.add("q" + s, act, {T, qdim}), p.add("k" + s, act, {T, kvdim}),
        p.add("v" + s, act, {T, kvdim}), p.add("att" + s, act, {T, qdim}),
        p.add("lse" + s, DType::F32, {T * nh}), p.add("hmid" + s, act, {T, H}),
        p.add("rstd2" + s, DType::F32, {T}), p.add("xn2" + s, act, {T, H}),
        p.add("gate" + s, act, {T, I}), p.add("up" + s, act, {T, I}),
        p.add("act" + s, act, {T, I})});
  }
  hs.inv = p.add("rope.inv_freq", DType::F32, {hd / 2});
  hs.proj = p.add("proj_out", act, {T, H});
  hs.xnf = p.add("final.xn", act, {T, H});
  hs.rstdf = p.add("final.rstd", DType::F32, {T});
  hs.gath = p.add("final.gathered", act, {Bm, H});
  hs.gath_idx = p.add("final.gather_index", DType::I32, {Bm});
  // Packed rows (a batch with padding): the valid tokens' ids, positions and padded indices,
  // the padded row → packed row map, and q, k, v, attention output in the packed layout (the
  // layer buffers above keep the padded layout that attention reads).
  hs.pack = {p.add("pack.tokens", DType::I32, {T}), p.add("pack.positions", DType::I32, {T}),
             p.add("pack.index", DType::I32, {T}), p.add("pack.unindex", DType::I32, {T}),
             p.add("pack.q", act, {T, qdim}), p.add("pack.k", act, {T, kvdim}),
             p.add("pack.v", act, {T, kvdim}), p.add("pack.att", act, {T, qdim})};
  std::vector<size_t>& bwd = hs.bwd;
  if (opts.training) {
    bwd = {p.add("grad_act.dresid", act, {T, H}),
           p.add("grad_act.dhmid", act, {T, H}),
           p.add("grad_act.dxn", act, {T, H}),
           p.add("grad_act.dact", act, {T, I}),
           p.add("grad_act.datt", act, {T, qdim}),
           p.add("grad_act.dq", act, {T, qdim}),
           p.add("grad_act.dk", act, {T, kvdim}),
           p.add("grad_act.dv", act, {T, kvdim})};
  }
  std::vector<size_t>& head = hs.head;
  if (opts.head == Head::LM) {
    int64_t chunk = opts.logits_chunk_rows;
    if (chunk <= 0)
      chunk = std::max<int64_t>(1, (int64_t(64) << 20) / (int64_t(dtype_size(prec.logits)) * V));
    chunk = std::min(chunk, T);
    head = {p.add("lm_head.lse", DType::F32, {T}), p.add("lm_head.logp", DType::F32, {T}),
            p.add("lm_head.targets", DType::I32, {T}), p.add("lm_head.dlogp", DType::F32, {T}),
            p.add("lm_head.logits_chunk", prec.logits, {chunk, V}),
            p.add("lm_head.rows", act, {T, H}), p.add("lm_head.row_index", DType::I32, {T}),
            p.add("lm_head.flat_index", DType::I32, {T})};
    // The two backward GEMMs read the logits' gradient in the activation dtype.
    if (opts.training && prec.logits != act)
      head.push_back(p.add("lm_head.dlogits_chunk", act, {chunk, V}));
  } else {
    // The bias GEMM reads the ones with the master bias (same dtype), writing fp32 scores.
    head = {p.add("score_head.ones", prec.master, {T, 1}),
            p.add("score_head.dscores", DType::F32, {T, 1}),
            p.add("score_head.end_index", DType::I32, {Bm})};
    if (opts.training && act != DType::F32) head.push_back(p.add("score_head.dscores_act", act, {T, 1}));
  }

  if (out) *out = std::move(hs);
  return p;
}

void LlamaModel::plan_acts() {
  ActHandles hs;
  act_plan_ = plan_act_entries(cfg_, opts_, prec_, &hs);
  const ArenaPlan& p = act_plan_;
  const std::vector<size_t>& resid_h = hs.resid;
  const std::vector<ActHandles::Layer>& ah = hs.layers;
  const std::vector<size_t>&bwd = hs.bwd, &head = hs.head;
  acts_arena_ = Arena(p, ctx_->device());
  for (size_t h : resid_h) resid_.push_back(acts_arena_[h]);
  for (const auto& a : ah) {
    const Arena& A = acts_arena_;
    layer_acts_.push_back(LayerActs{A[a.xn1], A[a.rstd1], A[a.q], A[a.k], A[a.v], A[a.att],
                                    A[a.lse], A[a.hmid], A[a.rstd2], A[a.xn2], A[a.gate],
                                    A[a.up], A[a.act]});
  }
  inv_freq_ = acts_arena_[hs.inv];
  proj_out_ = acts_arena_[hs.proj];
  xnf_ = acts_arena_[hs.xnf];
  rstdf_ = acts_arena_[hs.rstdf];
  gath_ = acts_arena_[hs.gath];
  gath_idx_ = acts_arena_[hs.gath_idx];
  pk_tokens_ = acts_arena_[hs.pack[0]];
  pk_positions_ = acts_arena_[hs.pack[1]];
  pk_index_ = acts_arena_[hs.pack[2]];
  pk_unindex_ = acts_arena_[hs.pack[3]];
  pk_q_ = acts_arena_[hs.pack[4]];
  pk_k_ = acts_arena_[hs.pack[5]];
  pk_v_ = acts_arena_[hs.pack[6]];
  pk_att_ = acts_arena_[hs.pack[7]];
  if (opts_.training) {
    dresid_ = acts_arena_[bwd[0]];
    dhmid_ = acts_arena_[bwd[1]];
    dxn_ = acts_arena_[bwd[2]];
    dact_ = acts_arena_[bwd[3]];
    datt_ = acts_arena_[bwd[4]];
    dq_ = acts_arena_[bwd[5]];
    dk_ = acts_arena_[bwd[6]];
    dv_ = acts_arena_[bwd[7]];
  }
  if (opts_.head == Head::LM) {
    head_lse_ = acts_arena_[head[0]];
    head_logp_ = acts_arena_[head[1]];
    head_targets_ = acts_arena_[head[2]];
    head_dlogp_ = acts_arena_[head[3]];
    logits_chunk_ = acts_arena_[head[4]];
    head_x_ = acts_arena_[head[5]];
    head_row_idx_ = acts_arena_[head[6]];
    head_flat_idx_ = acts_arena_[head[7]];
    dlogits_chunk_ = head.size() > 8 ? acts_arena_[head[8]] : logits_chunk_;
  } else {
    ones_ = acts_arena_[head[0]];
    dscore_ = acts_arena_[head[1]];
    end_idx_ = acts_arena_[head[2]];
    dscore_act_ = head.size() > 3 ? acts_arena_[head[3]] : dscore_;
  }
}

std::string LlamaModel::budget() const {
  std::ostringstream os;
  param_plan_.print_budget(os, cat("parameters (", dtype_name(prec_.master), " master, ",
                                   infos_.size(), " tensors)"));
  if (prec_.working_copy())
    os << "working copy of the parameters (" << dtype_name(prec_.work)
       << ", same element layout): " << format_bytes(work_buf_.size()) << "\n";
  if (opts_.training)
    param_plan_.print_budget(os, cat("gradients (", dtype_name(prec_.grads), ", same layout)"));
  act_plan_.print_budget(os, cat("activations (", dtype_name(prec_.act), "; rstd, lse f32; ",
                                 "logits ", dtype_name(prec_.logits), "; max batch ",
                                 opts_.max_batch, " x ", opts_.max_seq,
                                 opts_.training ? "" : ", inference",
                                 opts_.recompute ? ", recomputation" : "", ")"));
  return os.str();
}

namespace {
// The sharding of a model built with opts (nullopt: none applies).
std::optional<ShardLayout> shard_layout(const LlamaOptions& o, const PrecisionPlan& prec,
                                        std::vector<int64_t> bounds) {
  BEAVER_CHECK(o.zero_stage >= 0 && o.zero_stage <= 3, "LlamaModel: zero stage ", o.zero_stage,
               " is not 0, 1, 2 or 3");
  const int ranks = o.comm ? o.comm->size() : o.shard_ranks;
  const int rank = o.comm ? o.comm->rank() : o.shard_rank;
  BEAVER_CHECK(ranks >= 1 && rank >= 0 && rank < ranks, "LlamaModel: shard rank ", rank, " of ",
               ranks);
  ShardLayout l;
  l.ranks = ranks;
  l.rank = rank;
  l.params = o.zero_stage >= 3 && ranks > 1;
  l.grads = o.zero_stage >= 2 && ranks > 1 && o.training;
  if (!l.params && !l.grads) return std::nullopt;
  l.bounds = std::move(bounds);
  l.master = prec.master;
  l.working_copy = prec.working_copy();
  l.work = l.working_copy ? prec.work : prec.master;
  l.head_master = l.params && l.working_copy && o.head == Head::Score;
  l.prefetch = l.params && zero_prefetch_from_environment();
  return l;
}

// Bytes of the entries of `plan` named `names`, each with the alignment gap up to the next
// entry (so that the rest of the plan is total - this).
size_t span_of(const ArenaPlan& plan, std::initializer_list<const char*> names) {
  const auto& es = plan.entries();
  size_t sum = 0;
  for (size_t i = 0; i < es.size(); ++i)
    for (const char* n : names)
      if (es[i].name == n)
        sum += (i + 1 < es.size() ? es[i + 1].offset : plan.total_bytes()) - es[i].offset;
  return sum;
}

LlamaModel::Memory memory_of(const ArenaPlan& params, const ArenaPlan& acts,
                             const PrecisionPlan& prec, bool training,
                             const std::optional<ShardLayout>& layout) {
  LlamaModel::Memory m;
  m.flat_elements = int64_t(params.total_bytes() / dtype_size(prec.master));
  m.shard_elements = m.flat_elements;
  m.params = params.total_bytes();
  m.working = prec.working_copy() ? size_t(m.flat_elements) * dtype_size(prec.work) : 0;
  m.grads = training ? params.total_bytes() : 0;
  if (layout) {
    const ShardBytes sb = shard_bytes(*layout);
    m.shard_elements = shard_elements(layout->bounds, layout->ranks, layout->rank);
    if (layout->params) {
      m.params = sb.master;
      m.working = sb.working;
    }
    if (layout->grads) m.grads = sb.grads;
    m.gathered = sb.gathered;
  }
  m.logits = span_of(acts, {"lm_head.logits_chunk", "lm_head.dlogits_chunk"});
  m.acts = acts.total_bytes() - m.logits;
  return m;
}
}  // namespace

LlamaModel::Memory LlamaModel::plan_memory(const LlamaConfig& cfg, const LlamaOptions& opts,
                                           Device device) {
  const PrecisionPlan prec = PrecisionPlan::for_device(device, opts.training);
  return memory_of(plan_param_entries(cfg, opts.head, prec.master, nullptr),
                   plan_act_entries(cfg, opts, prec, nullptr), prec, opts.training,
                   shard_layout(opts, prec, unit_bounds(cfg, opts.head, prec.master)));
}

LlamaModel::Memory LlamaModel::memory() const {
  Memory m = memory_of(param_plan_, act_plan_, prec_, opts_.training,
                       shards_ ? std::optional<ShardLayout>(shards_->layout()) : std::nullopt);
  // What the arenas, the working buffer and the shards actually hold.
  const ShardBytes sb = shards_ ? shards_->bytes() : ShardBytes{};
  m.params = params_sharded() ? sb.master : params_.bytes();
  m.working = params_sharded() ? sb.working : work_buf_.size();
  m.grads = !opts_.training ? 0 : grads_sharded() ? sb.grads : grads_.bytes();
  m.gathered = sb.gathered;
  m.acts = acts_arena_.bytes() - m.logits;
  return m;
}

size_t LlamaModel::planned_bytes() const { return memory().total(); }

std::string LlamaModel::budget_summary() const {
  int64_t n = 0;
  for (const auto& p : infos_) n += p.shape.numel();
  char count[32];
  std::snprintf(count, sizeof count, "%.2fM", double(n) / 1e6);
  std::string s = cat("memory plan: ", opts_.head == Head::LM ? "causal LM" : "score model", ", ",
                      count, " parameters (", dtype_name(prec_.master), "): parameters ",
                      format_bytes(memory().params));
  if (prec_.working_copy()) s += cat(", working copy ", format_bytes(memory().working));
  if (opts_.training) s += cat(", gradients ", format_bytes(memory().grads));
  if (shards_)
    s += cat(" (zero stage ", opts_.zero_stage, ": ",
             params_sharded() ? (opts_.training ? "parameters and gradients" : "parameters")
                              : "gradients",
             " sharded over ", shards_->layout().ranks, " ranks, gathered units ",
             format_bytes(memory().gathered),
             shards_->layout().prefetch ? ", prefetching the next unit" : "", ")");
  s += cat(", activations ", format_bytes(act_plan_.total_bytes()), " (batch ", opts_.max_batch,
           " x ", opts_.max_seq, "); total ", format_bytes(planned_bytes()),
           " (--log_level debug for the breakdown)");
  return s;
}

// ---- parameters ------------------------------------------------------------------------------

bool LlamaModel::has_param(const std::string& name) const { return index_.count(name) > 0; }

Tensor LlamaModel::param(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end())
    BEAVER_FAIL("LlamaModel: no parameter named '", name, "' (",
                opts_.head == Head::LM ? "LM" : "score", " head, ", L_, " layers)");
  BEAVER_CHECK(!params_sharded(), "LlamaModel::param('", name, "'): the parameters are sharded "
               "(zero stage 3); use write_param / gather_params");
  return pv_[it->second];
}

Tensor LlamaModel::working_param(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) BEAVER_FAIL("LlamaModel: no parameter named '", name, "'");
  BEAVER_CHECK(!params_sharded(), "LlamaModel::working_param('", name, "'): the parameters are "
               "sharded (zero stage 3)");
  return wv_[it->second];
}

Tensor LlamaModel::grad(const std::string& name) const {
  require_training("grad");
  const auto it = index_.find(name);
  if (it == index_.end()) BEAVER_FAIL("LlamaModel: no gradient for '", name, "'");
  BEAVER_CHECK(!grads_sharded(), "LlamaModel::grad('", name, "'): the gradients are sharded "
               "(zero stage ", opts_.zero_stage, "); flat_grads() is this rank's shard");
  return gv_[it->second];
}

Tensor LlamaModel::flat_params() const {
  if (params_sharded()) return shards_->master();
  return Tensor(params_[0].data, prec_.master, Shape{num_flat()},
                params_.device());
}

Tensor LlamaModel::flat_working_params() const {
  if (!prec_.working_copy()) return Tensor{};
  if (params_sharded()) return shards_->working();
  return Tensor(work_buf_.data(), prec_.work, Shape{num_flat()},
                work_buf_.device());
}

void LlamaModel::sync_working_params() const {
  if (params_sharded()) return shards_->sync_working();
  if (prec_.working_copy()) ops::convert(*ctx_, flat_params(), flat_working_params());
}

Tensor LlamaModel::flat_grads() const {
  require_training("flat_grads");
  if (grads_sharded()) return shards_->grads();
  return Tensor(grads_[0].data, prec_.grads, Shape{num_flat()},
                grads_.device());
}

std::vector<ops::ParamSegment> LlamaModel::decay_segments(bool decay_norms) const {
  std::vector<ops::ParamSegment> segs;
  const auto& es = param_plan_.entries();
  for (size_t i = 0; i < es.size(); ++i) {
    if (infos_[i].is_bias || (infos_[i].is_norm && !decay_norms)) continue;
    segs.push_back(ops::ParamSegment{int64_t(es[i].offset / dtype_size(prec_.master)),
                                     es[i].shape.numel()});
  }
  return segs;
}

void LlamaModel::zero_grads() const {
  require_training("zero_grads");
  if (grads_sharded())
    shards_->zero_grads();
  else
    ctx_->zero(arena_bytes(grads_));
}

void LlamaModel::init_score_head(uint64_t seed) const {
  BEAVER_CHECK(opts_.head == Head::Score, "init_score_head: this model has an LM head");
  PhiloxStream rng(seed, 0x5c0e);
  std::vector<float> w(static_cast<size_t>(H_));
  for (auto& x : w) x = 0.02f * rng.normal();
  const DType master = prec_.master;
  if (master == DType::F32) {
    write_param("score_head.weight", Tensor(w.data(), DType::F32, Shape{1, H_}, Device::CPU));
    float zero = 0.0f;
    write_param("score_head.bias", Tensor(&zero, DType::F32, Shape{1}, Device::CPU));
  } else {  // a bf16 master (inference on CUDA): round on the host
    BEAVER_CHECK(master == DType::BF16, "init_score_head: master dtype ", dtype_name(master),
                 " is not f32 or bf16");
    std::vector<bf16> wb(w.size());
    for (size_t i = 0; i < w.size(); ++i) wb[i] = to_bf16(w[i]);
    write_param("score_head.weight", Tensor(wb.data(), DType::BF16, Shape{1, H_}, Device::CPU));
    bf16 zero = to_bf16(0.0f);
    write_param("score_head.bias", Tensor(&zero, DType::BF16, Shape{1}, Device::CPU));
  }
  sync_working_params();
}

LlamaModel::LayerParams LlamaModel::layer_params(const std::vector<Tensor>& arena, int l) const {
  // Handles follow plan_params(): embed, then 9 per layer.
  const size_t b = 1 + size_t(l) * 9;
  return LayerParams{arena[b], arena[b + 1], arena[b + 2], arena[b + 3], arena[b + 4],
                     arena[b + 5], arena[b + 6], arena[b + 7], arena[b + 8]};
}

Tensor LlamaModel::lm_weight(const std::vector<Tensor>& arena) const {
  return cfg_.tie_word_embeddings ? arena[0] : arena[lm_head_h_];
}

const LlamaModel::LayerActs& LlamaModel::acts(int l) const {
  return layer_acts_.size() == 1 ? layer_acts_[0] : layer_acts_[size_t(l)];
}

Tensor LlamaModel::resid(int l) const { return resid_.size() == 1 ? resid_[0] : resid_[size_t(l)]; }

void LlamaModel::require_training(const char* what) const {
  BEAVER_CHECK(opts_.training, "LlamaModel::", what,
               ": the model was built for inference (training = false)");
}

void LlamaModel::require_forward(const char* what) const {
  BEAVER_CHECK(have_forward_, "LlamaModel::", what, ": call forward() first (the last "
               "forward's activations are gone after decode_step or a backward)");
}

// ---- parameter source (sharding) -------------------------------------------------------------

std::vector<int64_t> LlamaModel::unit_bounds(const LlamaConfig& cfg, Head head, DType master) {
  const ArenaPlan plan = plan_param_entries(cfg, head, master, nullptr);
  const auto& es = plan.entries();
  const size_t es_size = dtype_size(master);
  const int64_t L = cfg.num_hidden_layers;
  std::vector<int64_t> b{0};
  // Handles follow plan_param_entries: embed, 9 per layer, then the final norm and the head.
  for (int64_t l = 0; l <= L; ++l) b.push_back(int64_t(es[size_t(1 + 9 * l)].offset / es_size));
  b.push_back(int64_t(plan.total_bytes() / es_size));
  return b;
}

std::vector<int64_t> LlamaModel::unit_bounds() const {
  return unit_bounds(cfg_, opts_.head, prec_.master);
}

void LlamaModel::setup_shards() {
  const size_t n = infos_.size();
  unit_handles_.assign(size_t(L_) + 2, {});
  for (size_t i = 0; i < n; ++i) {
    const size_t u = i == 0 ? 0 : i <= size_t(9 * L_) ? 1 + (i - 1) / 9 : size_t(L_) + 1;
    unit_handles_[u].push_back(i);
  }
  const auto layout = shard_layout(opts_, prec_, unit_bounds());
  if (!layout) return;
  BEAVER_CHECK(opts_.comm, "LlamaModel: zero stage ", opts_.zero_stage, " over ",
               layout->ranks, " ranks needs the communicator");
  shards_ = std::make_unique<ParamShards>(*ctx_, *opts_.comm, *layout);
}

int LlamaModel::head_unit() const {
  return opts_.head == Head::LM && cfg_.tie_word_embeddings ? 0 : int(L_) + 1;
}

namespace {
// Points the views of unit u's parameters into `base` (the unit's elements from `begin`).
void bind_views(std::vector<Tensor>& views, const std::vector<size_t>& handles,
                const ArenaPlan& plan, DType master, const Tensor& base, int64_t begin) {
  const auto& es = plan.entries();
  for (size_t h : handles) {
    const int64_t off = int64_t(es[h].offset / dtype_size(master)) - begin;
    views[h] = Tensor(static_cast<uint8_t*>(base.data) + size_t(off) * dtype_size(base.dtype),
                      base.dtype, es[h].shape, base.device);
  }
}
}  // namespace

void LlamaModel::use_unit(int u) {
  if (!params_sharded()) return;
  bind_views(wv_, unit_handles_[size_t(u)], param_plan_, prec_.master, shards_->params(u),
             shards_->unit_begin(u));
}

void LlamaModel::open_grads(int u) {
  if (!grads_sharded() || open_unit_ == u) return;
  close_grads();
  bind_views(gv_, unit_handles_[size_t(u)], param_plan_, prec_.master, shards_->grads_begin(u),
             shards_->unit_begin(u));
  open_unit_ = u;
}

void LlamaModel::close_grads() {
  if (!grads_sharded() || open_unit_ < 0) return;
  shards_->grads_end(open_unit_);
  for (size_t h : unit_handles_[size_t(open_unit_)]) gv_[h] = Tensor{};
  open_unit_ = -1;
}

Tensor LlamaModel::score_bias() {
  const size_t h = score_b_h_;
  if (!params_sharded()) return pv_[h];
  const int u = int(L_) + 1;
  use_unit(u);
  if (!shards_->layout().head_master) return wv_[h];  // the working copy is the master
  std::vector<Tensor> views(pv_.size());
  bind_views(views, unit_handles_[size_t(u)], param_plan_, prec_.master, shards_->head_master(u),
             shards_->unit_begin(u));
  return views[h];
}

void LlamaModel::write_param(const std::string& name, const Tensor& src) const {
  const auto it = index_.find(name);
  if (it == index_.end()) BEAVER_FAIL("LlamaModel::write_param: no parameter named '", name, "'");
  const ParamInfo& p = infos_[it->second];
  BEAVER_CHECK(src.dtype == prec_.master && src.shape == p.shape, "LlamaModel::write_param('",
               name, "'): source ", src.str(), ", the parameter is ", dtype_name(prec_.master),
               p.shape.str());
  if (!params_sharded()) return ctx_->copy(pv_[it->second], src);
  shards_->write_master(int64_t(param_plan_.entries()[it->second].offset / dtype_size(prec_.master)),
                        src);
}

std::vector<OwnedTensor> LlamaModel::gather_params(int root) const {
  std::vector<OwnedTensor> out;
  const bool mine = !params_sharded() || shards_->layout().rank == root;
  if (!params_sharded()) {
    ctx_->synchronize();
    for (size_t i = 0; i < infos_.size(); ++i) {
      out.emplace_back(prec_.master, infos_[i].shape);
      ctx_->copy(out.back(), pv_[i]);
    }
    return out;
  }
  // One unit at a time through host memory: rank `root` keeps them, the others only join.
  const auto& es = param_plan_.entries();
  const int ranks = shards_->layout().ranks;
  for (int u = 0; u < shards_->units(); ++u) {
    const int64_t n = shards_->unit_size(u), ub = shards_->unit_begin(u);
    OwnedTensor unit(prec_.master, Shape{n});
    const ShardPiece& p = shards_->pieces()[size_t(u)];
    if (p.len > 0)
      ctx_->copy(unit.view().slice(p.global - ub, p.global - ub + p.len),
                 shards_->master().slice(p.local, p.local + p.len));
    ctx_->synchronize();
    opts_.comm->all_gather(*ctx_, unit, Partition{n, ranks});
    if (!mine) continue;
    for (size_t h : unit_handles_[size_t(u)]) {
      out.emplace_back(prec_.master, infos_[h].shape);
      const int64_t off = int64_t(es[h].offset / dtype_size(prec_.master)) - ub;
      copy_tensor(out.back().view().view(Shape{infos_[h].shape.numel()}),
                  unit.view().slice(off, off + infos_[h].shape.numel()));
    }
  }
  return out;
}

void LlamaModel::gather_into(LlamaModel& full) {
  const DType work = prec_.working_copy() ? prec_.work : prec_.master;
  BEAVER_CHECK(&full != this && !full.params_sharded() && full.infos_.size() == infos_.size() &&
                   full.opts_.head == opts_.head && full.prec_.master == work &&
                   full.ctx_->device() == ctx_->device(),
               "LlamaModel::gather_into: the target must be an unsharded model of the same "
               "architecture and head with ", dtype_name(work), " parameters on ",
               device_name(ctx_->device()), "; it has ", full.infos_.size(), " parameters (",
               dtype_name(full.prec_.master), " on ", device_name(full.ctx_->device()),
               "), this model ", infos_.size());
  for (size_t h = 0; h < infos_.size(); ++h)
    BEAVER_CHECK(full.infos_[h].shape == infos_[h].shape, "LlamaModel::gather_into: ",
                 infos_[h].name, " is ", infos_[h].shape.str(), " here but ",
                 full.infos_[h].shape.str(), " in the target");
  if (shards_) shards_->invalidate();  // as forward(): the optimizer may have moved the shards
  if (shards_) shards_->invalidate();  // as forward(): the optimizer may have moved the shards
  for (size_t u = 0; u < unit_handles_.size(); ++u) {
    use_unit(int(u));  // sharded: unit u gathered into a slot, its views bound there
    for (size_t h : unit_handles_[u]) ctx_->copy(full.pv_[h], wv_[h]);
  }
}

// ---- trunk -----------------------------------------------------------------------------------

void LlamaModel::set_batch(const Batch& batch) {
  const char* op = "LlamaModel::forward";
  expect_rank(batch.tokens, 2, op, "tokens");
  expect_dtype(batch.tokens, DType::I32, op, "tokens");
  const int64_t B = batch.tokens.size(0), S = batch.tokens.size(1);
  BEAVER_CHECK(B >= 1 && B <= opts_.max_batch && S >= 1 && S <= opts_.max_seq, op,
               ": batch [", B, ", ", S, "] exceeds the planned maximum [", opts_.max_batch, ", ",
               opts_.max_seq, "]");
  expect_shape(batch.ranges, {B, 2}, op, "ranges");
  expect_dtype(batch.ranges, DType::I32, op, "ranges");
  expect_shape(batch.positions, {B, S}, op, "positions");
  expect_dtype(batch.positions, DType::I32, op, "positions");
  common_device({&batch.tokens, &batch.ranges, &batch.positions}, op);
  BEAVER_CHECK(batch.tokens.device == ctx_->device(), op, ": batch is on ",
               device_name(batch.tokens.device), ", the model on ", device_name(ctx_->device()));
  // Host sync: the ranges are validated on the host (a bad range must not reach a kernel) and
  // kept for the score head's end indices and the packed rows.
  ctx_->copy(Tensor(host_ranges_.data(), DType::I32, Shape{B, 2}, Device::CPU), batch.ranges);
  int64_t valid = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int32_t begin = host_ranges_[size_t(2 * b)], end = host_ranges_[size_t(2 * b + 1)];
    BEAVER_CHECK(0 <= begin && begin <= end && end <= S, op, ": row ", b, " has range [", begin,
                 ", ", end, ") outside [0, ", S, "]");
    valid += end - begin;
  }
  B_ = B;
  S_ = S;
  T_ = B * S;
  batch_ = batch;
  logits_cached_ = false;
  // Packed rows: the valid tokens one row after another (a batch without padding, or with no
  // valid token at all, keeps its layout).
  packed_ = valid > 0 && valid < T_;
  R_ = packed_ ? valid : T_;
  if (!packed_) return;
  download_i32(*ctx_, host_tokens_, batch.tokens.view({T_}));
  download_i32(*ctx_, host_positions_, batch.positions.view({T_}));
  host_pack_.resize(size_t(R_));
  host_unpack_.assign(size_t(T_), 0);  // a pad position points at row 0 (never read)
  // The ids and positions are compacted in place (row r comes from flat position >= r).
  int64_t r = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = host_ranges_[size_t(2 * b)]; t < host_ranges_[size_t(2 * b + 1)]; ++t, ++r) {
      const size_t flat = size_t(b * S + t);
      host_pack_[size_t(r)] = int32_t(flat);
      host_unpack_[flat] = int32_t(r);
      host_tokens_[size_t(r)] = host_tokens_[flat];
      host_positions_[size_t(r)] = host_positions_[flat];
    }
  upload_i32(*ctx_, pk_tokens_, host_tokens_, R_);
  upload_i32(*ctx_, pk_positions_, host_positions_, R_);
  upload_i32(*ctx_, pk_index_, host_pack_, R_);
  upload_i32(*ctx_, pk_unindex_, host_unpack_, T_);
}

Tensor LlamaModel::row_tokens() const {
  return packed_ ? pk_tokens_.slice(0, R_) : batch_.tokens.view({T_});
}

Tensor LlamaModel::row_positions() const {
  return packed_ ? pk_positions_.slice(0, R_) : batch_.positions.view({T_});
}

void LlamaModel::to_packed(const Tensor& padded, const Tensor& packed) const {
  ops::embedding_fwd(*ctx_, pk_index_.slice(0, R_), padded, packed);
}

void LlamaModel::to_padded(const Tensor& packed, const Tensor& padded) const {
  ops::embedding_fwd(*ctx_, pk_unindex_.slice(0, T_), packed, padded);
}

void LlamaModel::scatter_rows(const Tensor& rows, const Tensor& out) const {
  if (!packed_) return ctx_->copy(out, rows);
  // A scatter into a zeroed output: each position receives at most one row.
  ops::embedding_bwd(*ctx_, pk_index_.slice(0, R_), rows, out, false);
}

int32_t LlamaModel::row_of(int64_t b, int64_t t, const char* op) const {
  const int32_t begin = host_ranges_[size_t(2 * b)], end = host_ranges_[size_t(2 * b + 1)];
  BEAVER_CHECK(t >= begin && t < end, op, ": position ", t, " of row ", b,
               " is outside the row's tokens [", begin, ", ", end, ")");
  return packed_ ? host_unpack_[size_t(b * S_ + t)] : int32_t(b * S_ + t);
}

LlamaModel::RowBuffers LlamaModel::row_buffers(int l) const {
  if (packed_) return RowBuffers{pk_q_, pk_k_, pk_v_, pk_att_};
  const LayerActs& a = acts(l);
  return RowBuffers{a.q, a.k, a.v, a.att};
}

void LlamaModel::train_attend(int l, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& att, const Tensor& lse) {
  const LayerActs& a = acts(l);
  const Tensor qp = a.q.slice(0, T_), kp = a.k.slice(0, T_), vp = a.v.slice(0, T_),
               ap = a.att.slice(0, T_);
  if (packed_) {
    to_padded(q, qp);
    to_padded(k, kp);
    to_padded(v, vp);
  }
  ops::attention_fwd(*ctx_, qp.view({B_, S_, nh_, hd_}), kp.view({B_, S_, nkv_, hd_}),
                     vp.view({B_, S_, nkv_, hd_}), batch_.ranges, scale_,
                     ap.view({B_, S_, nh_, hd_}), lse.slice(0, T_ * nh_).view({B_, nh_, S_}));
  if (packed_) to_packed(ap, att);
}

void LlamaModel::linear(const Tensor& x, const Tensor& w, const Tensor& y) const {
  if (decoding_)
    ops::linear_fwd_rows(*ctx_, x, w, y);
  else
    ops::linear_fwd(*ctx_, x, w, y);
}

void LlamaModel::layer_forward(int l, int64_t T, const Tensor& positions, const Tensor& x,
                               const Tensor& residual, const Tensor& resid_out,
                               const AttendFn& attend) {
  Context& c = *ctx_;
  const LayerActs& a = acts(l);
  use_unit(1 + l);
  const LayerParams P = layer_params(wv_, l);
  BEAVER_CHECK(!residual.defined() || resid_out.defined(),
               "layer_forward: a residual input needs somewhere to store the stream");
  const Tensor stream = resid_out.defined() ? resid_out : x;
  const RowBuffers rb = row_buffers(l);
  const Tensor xn1 = a.xn1.slice(0, T), q = rb.q.slice(0, T), k = rb.k.slice(0, T),
               v = rb.v.slice(0, T), att = rb.att.slice(0, T), hmid = a.hmid.slice(0, T),
               xn2 = a.xn2.slice(0, T), gate = a.gate.slice(0, T), up = a.up.slice(0, T),
               act = a.act.slice(0, T), proj = proj_out_.slice(0, T);

  ops::rmsnorm_fwd(c, x, residual, P.in_norm, eps_, xn1, resid_out, a.rstd1.slice(0, T));
  linear(xn1, P.wq, q);
  linear(xn1, P.wk, k);
  linear(xn1, P.wv, v);
  ops::rope_fwd(c, q.view({T, nh_, hd_}), k.view({T, nkv_, hd_}), positions, inv_freq_);
  attend(l, q, k, v, att, a.lse);
  linear(att, P.wo, proj);
  ops::rmsnorm_fwd(c, proj, stream, P.post_norm, eps_, xn2, hmid, a.rstd2.slice(0, T));
  linear(xn2, P.wg, gate);
  linear(xn2, P.wu, up);
  ops::swiglu_fwd(c, gate, up, act);
  linear(act, P.wd, proj);  // the MLP output, added to hmid by the next norm
}

void LlamaModel::forward(const Batch& batch, const KvSink& sink) {
  set_batch(batch);
  decoding_ = false;
  Context& c = *ctx_;
  if (shards_) shards_->invalidate();  // the optimizer may have moved the shards since
  use_unit(0);
  ops::embedding_fwd(c, row_tokens(), wv_[0], resid(0).slice(0, R_));
  const AttendFn attend = [&](int l, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& att, const Tensor& lse) {
    train_attend(l, q, k, v, att, lse);
    // The padded k and v, as the cache stores them.
    if (sink)
      sink(l, acts(l).k.slice(0, T_).view({B_, S_, nkv_, hd_}),
           acts(l).v.slice(0, T_).view({B_, S_, nkv_, hd_}));
  };
  run_layers(R_, row_positions(), attend);
  have_forward_ = true;
}

void LlamaModel::run_layers(int64_t T, const Tensor& positions, const AttendFn& attend) {
  for (int l = 0; l < int(L_); ++l) {
    if (l == 0)
      layer_forward(0, T, positions, resid(0).slice(0, T), Tensor{}, Tensor{}, attend);
    else
      layer_forward(l, T, positions, proj_out_.slice(0, T), acts(l - 1).hmid.slice(0, T),
                    resid(l).slice(0, T), attend);
  }
  use_unit(int(L_) + 1);
  ops::rmsnorm_fwd(*ctx_, proj_out_.slice(0, T), acts(int(L_) - 1).hmid.slice(0, T),
                   wv_[final_norm_h_], eps_, xnf_.slice(0, T),
                   resid(int(L_)).slice(0, T), rstdf_.slice(0, T));
}

OwnedTensor LlamaModel::hidden(int l) const {
  require_training("hidden");
  require_forward("hidden");
  BEAVER_CHECK(l >= 0 && l <= L_, "LlamaModel::hidden: layer ", l, " outside [0, ", L_, "]");
  OwnedTensor out(prec_.act, {B_, S_, H_}, ctx_->device());
  scatter_rows(resid(l).slice(0, R_), out.view().view({T_, H_}));
  return out;
}

OwnedTensor LlamaModel::final_hidden() const {
  require_forward("final_hidden");
  OwnedTensor out(prec_.act, {B_, S_, H_}, ctx_->device());
  scatter_rows(xnf_.slice(0, R_), out.view().view({T_, H_}));
  return out;
}

void LlamaModel::trunk_backward(const Tensor& dxnf) {
  Context& c = *ctx_;
  const int64_t T = R_;
  const Tensor positions = row_positions();
  const Tensor dresid = dresid_.slice(0, T), dhmid = dhmid_.slice(0, T), dxn = dxn_.slice(0, T),
               dact = dact_.slice(0, T);
  // Attention's gradients in the padded layout it reads.
  const Tensor datt_pad = datt_.slice(0, T_), dq_pad = dq_.slice(0, T_),
               dk_pad = dk_.slice(0, T_), dv_pad = dv_.slice(0, T_);
  const size_t norm_h = final_norm_h_;
  use_unit(int(L_) + 1);
  open_grads(int(L_) + 1);
  ops::rmsnorm_bwd(c, dxnf, resid(int(L_)).slice(0, T), wv_[norm_h], rstdf_.slice(0, T),
                   Tensor{}, dresid, gv_[norm_h], true);
  const AttendFn attend = [&](int l, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& att, const Tensor& lse) {
    train_attend(l, q, k, v, att, lse);
  };
  for (int l = int(L_) - 1; l >= 0; --l) {
    // Recomputation: re-run the layer from its stored input. The last layer's activations
    // are still in the shared buffers from the forward.
    if (opts_.recompute && l != int(L_) - 1)
      layer_forward(l, T, positions, resid(l).slice(0, T), Tensor{}, Tensor{}, attend);
    const LayerActs& a = acts(l);
    use_unit(1 + l);
    open_grads(1 + l);
    const LayerParams P = layer_params(wv_, l);
    const LayerParams G = layer_params(gv_, l);
    const RowBuffers rb = row_buffers(l);
    const Tensor xn1 = a.xn1.slice(0, T), hmid = a.hmid.slice(0, T), xn2 = a.xn2.slice(0, T),
                 gate = a.gate.slice(0, T), up = a.up.slice(0, T), act = a.act.slice(0, T);
    // In the rows layout: the attention output (the o projection's input), then its gradient
    // in the same buffer; dq, dk, dv.
    const Tensor att = rb.att.slice(0, T), dq = packed_ ? pk_q_.slice(0, T) : dq_pad,
                 dk = packed_ ? pk_k_.slice(0, T) : dk_pad,
                 dv = packed_ ? pk_v_.slice(0, T) : dv_pad;
    const Tensor datt = packed_ ? att : datt_pad;
    // MLP: resid_out = hmid + down(swiglu(gate(xn2), up(xn2))).
    ops::linear_bwd_input(c, dresid, P.wd, dact, false);
    ops::linear_bwd_weight(c, dresid, act, G.wd, true);
    ops::swiglu_bwd(c, gate, up, dact, gate, up);  // gradients overwrite gate/up
    ops::linear_bwd_input(c, gate, P.wg, dxn, false);
    ops::linear_bwd_input(c, up, P.wu, dxn, true);
    ops::linear_bwd_weight(c, gate, xn2, G.wg, true);
    ops::linear_bwd_weight(c, up, xn2, G.wu, true);
    ops::rmsnorm_bwd(c, dxn, hmid, P.post_norm, a.rstd2.slice(0, T), dresid, dhmid, G.post_norm,
                     true);
    // Attention: hmid = stream + o(attention(rope(q(xn1)), rope(k(xn1)), v(xn1))).
    if (packed_) to_packed(a.att.slice(0, T_), att);  // the rows buffer may hold another layer's
    ops::linear_bwd_weight(c, dhmid, att, G.wo, true);
    ops::linear_bwd_input(c, dhmid, P.wo, datt, false);  // overwrites att when packed
    if (packed_) to_padded(datt, datt_pad);
    ops::attention_bwd(c, a.q.slice(0, T_).view({B_, S_, nh_, hd_}),
                       a.k.slice(0, T_).view({B_, S_, nkv_, hd_}),
                       a.v.slice(0, T_).view({B_, S_, nkv_, hd_}),
                       a.att.slice(0, T_).view({B_, S_, nh_, hd_}),
                       datt_pad.view({B_, S_, nh_, hd_}),
                       a.lse.slice(0, T_ * nh_).view({B_, nh_, S_}), batch_.ranges, scale_,
                       dq_pad.view({B_, S_, nh_, hd_}), dk_pad.view({B_, S_, nkv_, hd_}),
                       dv_pad.view({B_, S_, nkv_, hd_}));
    if (packed_) {
      to_packed(dq_pad, dq);
      to_packed(dk_pad, dk);
      to_packed(dv_pad, dv);
    }
    ops::rope_bwd(c, dq.view({T, nh_, hd_}), dk.view({T, nkv_, hd_}), positions, inv_freq_);
    ops::linear_bwd_input(c, dq, P.wq, dxn, false);
    ops::linear_bwd_input(c, dk, P.wk, dxn, true);
    ops::linear_bwd_input(c, dv, P.wv, dxn, true);
    ops::linear_bwd_weight(c, dq, xn1, G.wq, true);
    ops::linear_bwd_weight(c, dk, xn1, G.wk, true);
    ops::linear_bwd_weight(c, dv, xn1, G.wv, true);
    ops::rmsnorm_bwd(c, dxn, resid(l).slice(0, T), P.in_norm, a.rstd1.slice(0, T), dhmid, dresid,
                     G.in_norm, true);
  }
  open_grads(0);
  ops::embedding_bwd(c, row_tokens(), dresid, gv_[0], true);
  close_grads();
  have_forward_ = false;
}

// ---- LM head ---------------------------------------------------------------------------------

void LlamaModel::logits(const Tensor& out) {
  BEAVER_CHECK(opts_.head == Head::LM, "LlamaModel::logits: this model has a score head");
  require_forward("logits");
  expect_shape(out, {B_, S_, V_}, "LlamaModel::logits", "out");
  use_unit(head_unit());
  const Tensor all = out.view({T_, V_});
  if (!packed_) return ops::linear_fwd(*ctx_, xnf_.slice(0, T_), lm_weight(wv_), all);
  // Packed: chunk by chunk through the logits buffer into the zeroed output.
  ctx_->zero(out);
  const int64_t C = logits_chunk_.size(0);
  for (int64_t r0 = 0; r0 < R_; r0 += C) {
    const int64_t r1 = std::min(R_, r0 + C);
    const Tensor lg = logits_chunk_.slice(0, r1 - r0);
    ops::linear_fwd(*ctx_, xnf_.slice(r0, r1), lm_weight(wv_), lg);
    ops::embedding_bwd(*ctx_, pk_index_.slice(r0, r1), lg, all, true);
  }
  logits_cached_ = false;
}

void LlamaModel::logits_at(const Tensor& rows, const Tensor& out) {
  BEAVER_CHECK(opts_.head == Head::LM, "LlamaModel::logits_at: this model has a score head");
  require_forward("logits_at");
  expect_rank(rows, 1, "LlamaModel::logits_at", "rows");
  const int64_t n = rows.size(0);
  BEAVER_CHECK(n >= 1 && n <= opts_.max_batch, "LlamaModel::logits_at: ", n,
               " rows requested, at most max_batch = ", opts_.max_batch);
  expect_shape(out, {n, V_}, "LlamaModel::logits_at", "out");
  Tensor idx = rows;
  if (packed_) {
    // Flat positions → rows of the packed layout (a host round trip of n indices).
    std::vector<int32_t> flat;
    download_i32(*ctx_, flat, rows);
    for (int64_t i = 0; i < n; ++i) {
      const int32_t f = flat[size_t(i)];
      BEAVER_CHECK(f >= 0 && f < T_, "LlamaModel::logits_at: row ", i, " is position ", f,
                   ", outside the batch's ", T_, " positions");
      flat[size_t(i)] = row_of(f / S_, f % S_, "LlamaModel::logits_at");
    }
    upload_i32(*ctx_, gath_idx_, flat, n);
    idx = gath_idx_.slice(0, n);
  }
  // The embedding lookup doubles as a row gather (it checks every index against the rows).
  ops::embedding_fwd(*ctx_, idx, xnf_.slice(0, R_), gath_.slice(0, n));
  use_unit(head_unit());
  ops::linear_fwd(*ctx_, gath_.slice(0, n), lm_weight(wv_), out);
}

Tensor LlamaModel::head_input() const {
  return head_compact_ ? head_x_.slice(0, head_n_) : xnf_.slice(0, R_);
}

void LlamaModel::lm_chunks(bool backward, const Tensor& dlogp) {
  Context& c = *ctx_;
  use_unit(head_unit());
  if (backward) open_grads(head_unit());
  const Tensor W = lm_weight(wv_);
  const Tensor X = head_input();
  const int64_t N = head_n_, C = logits_chunk_.size(0);
  const bool round_dlogits = dlogits_chunk_.data != logits_chunk_.data;
  for (int64_t r0 = 0; r0 < N; r0 += C) {
    const int64_t r1 = std::min(N, r0 + C);
    const Tensor x = X.slice(r0, r1), lg = logits_chunk_.slice(0, r1 - r0),
                 tg = head_targets_.slice(r0, r1), lse = head_lse_.slice(r0, r1);
    // One chunk for all rows: the forward's logits are still there for the backward.
    const bool reuse = backward && logits_cached_ && r0 == 0 && r1 == N;
    if (!reuse) ops::linear_fwd(c, x, W, lg);
    if (!backward) {
      ops::logprob_fwd(c, lg, tg, head_logp_.slice(r0, r1), lse);
      logits_cached_ = r0 == 0 && r1 == N;
    } else {
      logits_cached_ = false;  // the logits' gradient overwrites them
      ops::logprob_bwd(c, lg, tg, lse, dlogp.slice(r0, r1), lg);  // dlogits overwrite logits
      const Tensor dlg = round_dlogits ? dlogits_chunk_.slice(0, r1 - r0) : lg;
      if (round_dlogits) ops::convert(c, lg, dlg);
      ops::linear_bwd_weight(c, dlg, x, lm_weight(gv_), true);
      // Compact rows: their input is no longer needed once the weight gradient has it, so the
      // input gradient takes its place (scattered to the rows below).
      ops::linear_bwd_input(c, dlg, W, head_compact_ ? x : dxn_.slice(r0, r1), false);
    }
  }
}

void LlamaModel::token_logprobs(const Tensor& targets, const Tensor& logp) {
  const char* op = "LlamaModel::token_logprobs";
  BEAVER_CHECK(opts_.head == Head::LM, op, ": this model has a score head");
  require_forward("token_logprobs");
  expect_shape(targets, {B_, S_}, op, "targets");
  expect_dtype(targets, DType::I32, op, "targets");
  // Host sync: which rows have a target decides which rows enter the head.
  download_i32(*ctx_, host_targets_, targets.view({T_}));
  host_head_rows_.clear();
  host_head_flat_.clear();
  host_head_targets_.clear();
  for (int64_t r = 0; r < R_; ++r) {
    const int32_t flat = packed_ ? host_pack_[size_t(r)] : int32_t(r);
    const int32_t tg = host_targets_[size_t(flat)];
    if (tg == ops::kIgnoreIndex) continue;
    host_head_rows_.push_back(int32_t(r));
    host_head_flat_.push_back(flat);
    host_head_targets_.push_back(tg);
  }
  head_n_ = int64_t(host_head_rows_.size());
  head_compact_ = head_n_ < R_;
  logits_cached_ = false;
  if (head_n_ > 0) {
    upload_i32(*ctx_, head_targets_, host_head_targets_, head_n_);
    upload_i32(*ctx_, head_row_idx_, host_head_rows_, head_n_);
    upload_i32(*ctx_, head_flat_idx_, host_head_flat_, head_n_);
    if (head_compact_)
      ops::embedding_fwd(*ctx_, head_row_idx_.slice(0, head_n_), xnf_.slice(0, R_),
                         head_x_.slice(0, head_n_));
    lm_chunks(false, Tensor{});
  }
  if (logp.defined()) {
    expect_shape(logp, {B_, S_}, op, "logp");
    if (head_n_ == 0)
      ops::fill(*ctx_, logp, 0.0f);
    else if (head_n_ == T_)
      ctx_->copy(logp.view({T_}), head_logp_.slice(0, T_));
    else  // 0 where the target is ignored
      ops::embedding_bwd(*ctx_, head_flat_idx_.slice(0, head_n_),
                         head_logp_.slice(0, head_n_).view({head_n_, 1}), logp.view({T_, 1}),
                         false);
  }
}

void LlamaModel::lm_backward() {
  if (head_n_ > 0) lm_chunks(true, head_dlogp_.slice(0, head_n_));
  const Tensor dxn = dxn_.slice(0, R_);
  if (head_n_ == 0)
    ops::fill(*ctx_, dxn, 0.0f);
  else if (head_compact_)  // the input gradients of the head rows, 0 for every other row
    ops::embedding_bwd(*ctx_, head_row_idx_.slice(0, head_n_), head_x_.slice(0, head_n_), dxn,
                       false);
  trunk_backward(dxn);
}

void LlamaModel::token_logprobs_backward(const Tensor& dlogp) {
  require_training("token_logprobs_backward");
  require_forward("token_logprobs_backward");
  expect_shape(dlogp, {B_, S_}, "LlamaModel::token_logprobs_backward", "dlogp");
  // The head rows' gradients (an ignored target's log-prob is 0, whatever dlogp says there).
  if (head_n_ > 0)
    ops::embedding_fwd(*ctx_, head_flat_idx_.slice(0, head_n_), dlogp.view({T_, 1}),
                       head_dlogp_.slice(0, head_n_).view({head_n_, 1}));
  lm_backward();
}

double LlamaModel::cross_entropy(const Tensor& targets) {
  token_logprobs(targets, Tensor{});
  BEAVER_CHECK(head_n_ > 0, "LlamaModel::cross_entropy: every target is ignored (-100); no loss");
  // Host sync: the loss is a host number.
  host_f32_.resize(size_t(head_n_));
  ctx_->copy(Tensor(host_f32_.data(), DType::F32, Shape{head_n_}, Device::CPU),
             head_logp_.slice(0, head_n_));
  double sum = 0.0;
  for (int64_t i = 0; i < head_n_; ++i) sum -= double(host_f32_[size_t(i)]);
  ce_count_ = head_n_;
  return sum / double(head_n_);
}

void LlamaModel::cross_entropy_backward(float scale) {
  BEAVER_CHECK(ce_count_ > 0, "LlamaModel::cross_entropy_backward: call cross_entropy() first");
  require_training("cross_entropy_backward");
  require_forward("cross_entropy_backward");
  // Every head row has a target: the same gradient for each.
  ops::fill(*ctx_, head_dlogp_.slice(0, head_n_), -scale / float(ce_count_));
  ce_count_ = 0;
  lm_backward();
}

// ---- score head ------------------------------------------------------------------------------

void LlamaModel::scores(const Tensor& scores, const Tensor& end_scores) {
  const char* op = "LlamaModel::scores";
  BEAVER_CHECK(opts_.head == Head::Score, op, ": this model has an LM head");
  require_forward("scores");
  expect_shape(scores, {B_, S_}, op, "scores");
  Context& c = *ctx_;
  // The rows' scores: straight into the output, or through the score buffer when packed.
  const Tensor sc = packed_ ? dscore_.slice(0, R_) : scores.view({T_, 1});
  const Tensor bias = score_bias();  // gathers the head unit when sharded
  use_unit(int(L_) + 1);
  ops::linear_fwd(c, xnf_.slice(0, R_), wv_[score_w_h_], sc);
  // + bias: a K = 1 GEMM with a column of ones, so no broadcast op is needed.
  ops::gemm(c, ones_.slice(0, R_), false, bias.view({1, 1}), false, sc, 1.0f, 1.0f);
  if (end_scores.defined()) {
    expect_shape(end_scores, {B_}, op, "end_scores");
    for (int64_t b = 0; b < B_; ++b) {
      const int32_t begin = host_ranges_[size_t(2 * b)], end = host_ranges_[size_t(2 * b + 1)];
      BEAVER_CHECK(end > begin, op, ": row ", b, " is empty (range [", begin, ", ", end,
                   ")): it has no end score");
      host_idx_[size_t(b)] = row_of(b, end - 1, op);
    }
    upload_i32(c, end_idx_, host_idx_, B_);
    ops::embedding_fwd(c, end_idx_.slice(0, B_), sc, end_scores.view({B_, 1}));
  }
  if (packed_) scatter_rows(sc, scores.view({T_, 1}));
}

void LlamaModel::scores_backward(const Tensor& dscores, const Tensor& dend_scores) {
  const char* op = "LlamaModel::scores_backward";
  BEAVER_CHECK(opts_.head == Head::Score, op, ": this model has an LM head");
  require_training("scores_backward");
  require_forward("scores_backward");
  Context& c = *ctx_;
  const int64_t R = R_;
  const Tensor ds = dscore_.slice(0, R);
  if (dscores.defined()) {
    expect_shape(dscores, {B_, S_}, op, "dscores");
    if (packed_)
      to_packed(dscores.view({T_, 1}), ds);
    else
      c.copy(ds, dscores.view({T_, 1}));
  } else {
    ops::fill(c, ds, 0.0f);
  }
  if (dend_scores.defined()) {
    expect_shape(dend_scores, {B_}, op, "dend_scores");
    for (int64_t b = 0; b < B_; ++b) {
      const int32_t begin = host_ranges_[size_t(2 * b)], end = host_ranges_[size_t(2 * b + 1)];
      BEAVER_CHECK(end > begin, op, ": row ", b, " is empty: it has no end score");
      host_idx_[size_t(b)] = row_of(b, end - 1, op);
    }
    upload_i32(c, end_idx_, host_idx_, B_);
    // Scatter-add of the end-score gradients into their positions (deterministic).
    ops::embedding_bwd(c, end_idx_.slice(0, B_), dend_scores.view({B_, 1}), ds, true);
  }
  const Tensor x = xnf_.slice(0, R);
  // The weight GEMMs read the score gradient in the activation dtype; the bias gradient
  // (fp32 ones) reads it in fp32.
  const Tensor dsa = dscore_act_.slice(0, R);
  if (dsa.data != ds.data) ops::convert(c, ds, dsa);
  const size_t wh = score_w_h_, bh = score_b_h_;
  use_unit(int(L_) + 1);
  open_grads(int(L_) + 1);
  ops::linear_bwd_weight(c, dsa, x, gv_[wh], true);
  ops::gemm(c, ds, true, ones_.slice(0, R), false, gv_[bh].view({1, 1}), 1.0f, 1.0f);
  ops::linear_bwd_input(c, dsa, wv_[wh], dxn_.slice(0, R), false);
  trunk_backward(dxn_.slice(0, R));
}

// ---- decode ----------------------------------------------------------------------------------

void LlamaModel::decode_step(const Tensor& tokens, const Tensor& positions, const KvCache& cache,
                             const Tensor& append_pos, const Tensor& cache_ranges,
                             const Tensor& out_logits) {
  const char* op = "LlamaModel::decode_step";
  BEAVER_CHECK(opts_.head == Head::LM, op, ": this model has a score head");
  expect_rank(tokens, 1, op, "tokens");
  const int64_t B = tokens.size(0);
  BEAVER_CHECK(B >= 1 && B <= opts_.max_batch, op, ": batch ", B, " exceeds max_batch ",
               opts_.max_batch);
  expect_shape(positions, {B}, op, "positions");
  expect_shape(append_pos, {B}, op, "append_pos");
  expect_shape(cache_ranges, {B, 2}, op, "cache_ranges");
  expect_shape(out_logits, {B, V_}, op, "logits");
  BEAVER_CHECK(int64_t(cache.k.size()) == L_ && int64_t(cache.v.size()) == L_, op, ": cache has ",
               cache.k.size(), "/", cache.v.size(), " layers, the model ", L_);
  Context& c = *ctx_;
  have_forward_ = false;
  logits_cached_ = false;
  packed_ = false;  // one token per sequence: the layer buffers hold the B rows as they are
  decoding_ = true;
  if (shards_) shards_->invalidate();
  use_unit(0);
  ops::embedding_fwd(c, tokens, wv_[0], resid(0).slice(0, B));
  const AttendFn attend = [&](int l, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& att, const Tensor& lse) {
    (void)lse;
    const Tensor kc = cache.k[size_t(l)].slice(0, B), vc = cache.v[size_t(l)].slice(0, B);
    ops::kv_append(c, k.view({B, 1, nkv_, hd_}), v.view({B, 1, nkv_, hd_}), kc, vc, append_pos);
    ops::decode_attention(c, q.view({B, nh_, hd_}), kc, vc, cache_ranges, scale_,
                          att.view({B, nh_, hd_}));
  };
  run_layers(B, positions, attend);
  use_unit(head_unit());
  linear(xnf_.slice(0, B), lm_weight(wv_), out_logits);
}

std::vector<int32_t> next_token_targets(const std::vector<int32_t>& tokens,
                                        const std::vector<int32_t>& ranges, int64_t B,
                                        int64_t S, const std::vector<int32_t>& label_begin) {
  BEAVER_CHECK(int64_t(tokens.size()) == B * S && int64_t(ranges.size()) == 2 * B,
               "next_token_targets: ", tokens.size(), " tokens and ", ranges.size(),
               " range values for a [", B, ", ", S, "] batch");
  BEAVER_CHECK(label_begin.empty() || int64_t(label_begin.size()) == B, "next_token_targets: ",
               label_begin.size(), " label_begin values for ", B, " rows");
  std::vector<int32_t> t(size_t(B * S), ops::kIgnoreIndex);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t begin = ranges[size_t(2 * b)], end = ranges[size_t(2 * b + 1)];
    BEAVER_CHECK(0 <= begin && begin <= end && end <= S, "next_token_targets: row ", b,
                 " has range [", begin, ", ", end, ")");
    const int64_t first = label_begin.empty() ? begin : std::max<int64_t>(begin, label_begin[size_t(b)]);
    for (int64_t i = std::max<int64_t>(begin, first - 1); i + 1 < end; ++i)
      t[size_t(b * S + i)] = tokens[size_t(b * S + i + 1)];
  }
  return t;
}

}  // namespace beaver::model
