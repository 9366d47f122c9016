// The LLaMA graph: one implementation serving every role of Safe RLHF. The actor and the
// reference model use the LM head; the reward model, the cost model and both critics use the
// score head (Linear(H, 1) with bias, docs/algorithm.md section 2). Only the head differs.
//
// Memory is explicit and planned at construction for a maximum batch (B, S):
//   params  one Arena of master parameters (fp32; bf16 for a CUDA model built for inference
//           only, which then has no separate working copy), HF tensor names;
//   work    on CUDA, a bf16 working copy of the params with the same element offsets
//           (flat_working_params), which is what the ops read; on the CPU the ops read the
//           master directly. AdamW writes it as its lowp output; after writing the master any
//           other way call sync_working_params();
//   grads   a second Arena with the same plan (same offsets), so AdamW and the gradient norm
//           run over one flat vector each (flat_params / flat_grads; the 256-byte alignment
//           gaps between tensors are zero in both and stay zero);
//   acts    one Arena for activations, backward buffers and head buffers.
// Every dtype comes from the PrecisionPlan of the context's device (model/precision.h): fp32
// everywhere on the CPU; bf16 activations and working params with fp32 master, grads, rstd,
// lse and logits on CUDA. The budget (one summary line; the table with dtypes at debug level) is
// logged at construction.
//
// Training forward over a padded batch: tokens i32 [B,S], ranges i32 [B,2] (valid tokens
// [begin, end) of each row: right padding has end < S, left padding begin > 0) and positions
// i32 [B,S] (rotary position ids; right padding 0..len-1, left padding counted from begin).
// Packed rows: when a batch has padding, every op that works token by token (embedding,
// norms, the linear layers, rotary, SwiGLU, the heads) runs on its valid tokens only, packed
// in row order (row b's tokens [begin, end) one after another); attention gathers q, k, v into
// the padded layout it reads and its output back. Padding therefore costs no GEMM work; what
// the pad positions would have computed is never read by valid ones (attention masks them),
// so each valid token's result is the one the padded batch gives. Outputs in the batch layout
// (scores, log-probs, logits, hidden states) are 0 at pad positions.
// The LM head's log-prob and cross-entropy path also runs only on the rows whose target is not
// ignored (-100): an ignored row's log-prob is 0 and its gradient 0, so skipping it changes
// nothing but the work (the answer tokens of SFT, the response tokens of a rollout).
//
// Activation storage per layer (training, no recomputation): the layer input (residual
// stream), both norm outputs and rstd, q/k (after rotary), v, attention output and lse, the
// residual after attention, gate/up and the SwiGLU output. With recomputation only the layer
// inputs are kept per layer; one set of layer buffers is shared and the backward re-runs each
// layer's forward from its stored input (the last layer's activations are still in place).
// The recomputed forward evaluates exactly the same ops on the same inputs, so gradients are
// bitwise identical with and without it. Inference (training = false) keeps one residual
// stream and one set of layer buffers.
//
// Backward: every weight gradient accumulates (+=) into the grads arena, so several
// backward calls add up (gradient accumulation); zero_grads() clears them. A backward consumes
// the stored activations (gate/up are overwritten by their gradients).
//
// Sharded parameters and gradients (ZeRO, options.zero_stage with more than one rank,
// model/param_shards.h): the flat vector is cut into units (0 the embedding, 1 + l layer l,
// L + 1 the final norm and the head). The graph reaches parameters and gradients only through
// its parameter source, two calls the layer loop makes before it touches a unit:
//   use_unit(u)    stage 3: unit u's parameters are gathered (unless still resident) and the
//                  views of its tensors point into the gathered slot;
//   open_grads(u)  stages 2 and 3: the gradient of the unit open until now is reduce-scattered
//                  into this rank's gradient shard, and unit u's gradient views point into the
//                  zeroed unit buffer the backward then accumulates into.
// Without sharding both are no-ops. Under sharding every forward and backward is a collective:
// every rank must make the same sequence of calls (train/ runs a one-token pass with a zero
// gradient on a rank that has no data). flat_params / flat_working_params / flat_grads are then
// the rank's shards (model/param_shards.h, the pieces' layout); param(), working_param() and
// grad() of a sharded vector fail; write_param and gather_params read and write by name.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "csrc/arena.h"
#include "csrc/context.h"
#include "csrc/ops/adamw.h"
#include "model/config.h"
#include "model/param_shards.h"
#include "model/precision.h"

namespace beaver::model {

enum class Head { LM, Score };

struct LlamaOptions {
  Head head = Head::LM;
  int64_t max_batch = 1;
  int64_t max_seq = 0;      // required (> 0)
  bool training = true;     // plan gradients and backward buffers
  bool recompute = false;   // per-layer activation recomputation (training only)
  // Rows of logits materialised at once by the fused log-prob / cross-entropy path
  // (0: min(B*S, enough rows for ~64 MiB of logits)). Memory: rows * V floats.
  int64_t logits_chunk_rows = 0;
  // ZeRO sharding over data-parallel ranks (see the header comment): zero_stage 2 shards the
  // gradients (training only), 3 also the parameters. Applies only with more than one rank;
  // comm is then required. plan_memory reads shard_ranks / shard_rank instead of comm.
  int zero_stage = 0;
  Communicator* comm = nullptr;
  int shard_ranks = 1, shard_rank = 0;
};

// A padded batch (all on the model's device). B <= max_batch, S <= max_seq.
struct Batch {
  Tensor tokens;     // i32 [B, S]
  Tensor ranges;     // i32 [B, 2]
  Tensor positions;  // i32 [B, S]
};

struct ParamInfo {
  std::string name;  // HF name
  Shape shape;
  bool is_bias = false;  // score_head.bias
  bool is_norm = false;  // RMSNorm weights
};

// The KV cache of the inference engine: per layer k and v [B, Smax, nkv, head_dim].
struct KvCache {
  std::vector<Tensor> k, v;
};

// Called during forward() for every layer with k (after rotary) and v [B, S, nkv, head_dim]:
// the engine's prefill writes them into its cache.
using KvSink = std::function<void(int layer, const Tensor& k, const Tensor& v)>;

class LlamaModel {
 public:
  LlamaModel(Context& ctx, const LlamaConfig& cfg, const LlamaOptions& opts);
  LlamaModel(const LlamaModel&) = delete;
  LlamaModel& operator=(const LlamaModel&) = delete;

  const LlamaConfig& config() const { return cfg_; }
  const LlamaOptions& options() const { return opts_; }
  Head head() const { return opts_.head; }
  Context& context() const { return *ctx_; }
  const PrecisionPlan& precision() const { return prec_; }
  int64_t num_layers() const { return L_; }
  int64_t num_kv_heads() const { return nkv_; }
  int64_t head_dim() const { return hd_; }
  int64_t vocab_size() const { return V_; }
  // The three memory plans as a table (logged at construction at debug level).
  std::string budget() const;
  // Bytes of the model's memory: params arena (master), working copy, grads arena, and the
  // activations arena split into the LM head's logits chunks and the rest (acts).
  struct Memory {
    size_t params = 0, working = 0, grads = 0, acts = 0, logits = 0;
    size_t gathered = 0;  // sharded: the gathered unit slots and the unit gradient buffer
    int64_t flat_elements = 0;   // elements of the whole flat vector
    int64_t shard_elements = 0;  // elements of this rank's shard (= flat_elements unsharded)
    size_t total() const { return params + working + grads + acts + logits + gathered; }
  };
  // What a model built with (cfg, opts) on `device` allocates, from the planning code the
  // constructor runs (nothing is allocated; cfg is not validated here).
  static Memory plan_memory(const LlamaConfig& cfg, const LlamaOptions& opts, Device device);
  // What this model allocated (the sizes of its arenas and working buffer).
  Memory memory() const;
  // One line with the parts and their total (logged at construction at info level):
  // "memory plan: causal LM, 1.05M parameters (f32): parameters 4.02 MiB, ... ; total 30.1 MiB".
  std::string budget_summary() const;
  size_t planned_bytes() const;  // parameters + working copy + gradients + activations

  // ---- sharding (ZeRO stages 2 and 3) -----------------------------------------------------------
  bool params_sharded() const { return shards_ && shards_->layout().params; }
  bool grads_sharded() const { return shards_ && shards_->layout().grads; }
  // The shard storage (null without sharding).
  const ParamShards* shards() const { return shards_.get(); }
  // Unit bounds (element offsets into the flat vector; units + 1 entries) of a model.
  static std::vector<int64_t> unit_bounds(const LlamaConfig& cfg, Head head, DType master);
  std::vector<int64_t> unit_bounds() const;
  int64_t flat_elements() const { return num_flat(); }  // the whole flat vector
  // Writes parameter `name` from src (master dtype, the parameter's shape, any device): the
  // master itself, or this rank's part of it when sharded.
  void write_param(const std::string& name, const Tensor& src) const;
  // Every parameter as a host tensor (master dtype), in params() order. A collective when the
  // parameters are sharded (every rank calls it; rank `root` gets the tensors, the others an
  // empty list); else a copy of the master.
  std::vector<OwnedTensor> gather_params(int root = 0) const;
  // Copies every parameter, as the ops read it (the working copy where there is one), into
  // `full`: a model of the same architecture and head without parameter sharding whose master
  // dtype is this model's working dtype (the inference copy a sharded actor generates from).
  // Parameters sharded: a collective (every rank calls it; each unit is all-gathered once, in
  // order, through the slots the forward uses); else a device copy.
  void gather_into(LlamaModel& full);

  // ---- parameters and gradients ---------------------------------------------------------------
  const std::vector<ParamInfo>& params() const { return infos_; }
  bool has_param(const std::string& name) const;
  Tensor param(const std::string& name) const;  // master; throws naming the missing one
  Tensor working_param(const std::string& name) const;  // what the ops read (= param on CPU)
  Tensor grad(const std::string& name) const;   // training only
  // The master params as one vector [N] (f32; bf16 for a CUDA inference model) over the whole
  // params arena, and the grads (f32 [N], same layout).
  Tensor flat_params() const;
  Tensor flat_grads() const;
  // The working copy as one vector [N] in the plan's work dtype, same layout (AdamW's lowp
  // output); undefined when the plan has no working copy (CPU).
  Tensor flat_working_params() const;
  // Working copy = master rounded (nearest-even); a no-op without a working copy. The loader
  // and init_score_head call it; so must anything else that writes master params directly.
  void sync_working_params() const;
  // Offsets (in elements of the flat vectors) of the tensors that get weight decay: every
  // parameter except biases; norm weights too unless decay_norms is false. (safe-rlhf
  // excludes names containing "bias" or "LayerNorm.weight", which LLaMA's RMSNorm weights
  // do not match, so they do decay there.)
  std::vector<ops::ParamSegment> decay_segments(bool decay_norms = true) const;
  void zero_grads() const;
  // A fresh score head: weight ~ N(0, 0.02) from Philox(seed, stream 0x5c0e), bias 0.
  void init_score_head(uint64_t seed) const;

  // ---- trunk ----------------------------------------------------------------------------------
  // Embedding, all layers and the final norm; keeps what the backward needs.
  void forward(const Batch& batch, const KvSink& sink = {});
  // Residual stream entering layer l ([B,S,H] of the last forward, 0 at pad positions; a copy
  // on the model's device), l in [0, L]: l = 0 is the embedding output, l = L the stream
  // before the final norm (training only). Activations are in precision().act (bf16 on CUDA).
  OwnedTensor hidden(int l) const;
  // Output of the final norm [B,S,H] (a copy, 0 at pad positions).
  OwnedTensor final_hidden() const;

  // ---- LM head --------------------------------------------------------------------------------
  // All logits [B,S,V] of the last forward (0 at pad positions).
  void logits(const Tensor& out);
  // Logits [n,V] of n chosen positions (flat indices b*S + t, i32 [n] on the device; each must
  // be a valid token of its row).
  void logits_at(const Tensor& rows, const Tensor& out);
  // logp[b,t] = log softmax(logits[b,t])[targets[b,t]] (0 where targets == -100), without
  // keeping all logits (chunks of logits_chunk_rows rows).
  void token_logprobs(const Tensor& targets, const Tensor& logp);
  // Backward of token_logprobs for dlogp f32 [B,S] (the targets of the last call).
  void token_logprobs_backward(const Tensor& dlogp);
  // Mean cross-entropy over the non-ignored targets (HF's loss when targets are the next
  // tokens); remembers the count for cross_entropy_backward.
  double cross_entropy(const Tensor& targets);
  // Backward of scale * (the mean cross-entropy of the last call).
  void cross_entropy_backward(float scale = 1.0f);

  // ---- score head -----------------------------------------------------------------------------
  // scores f32 [B,S] at every position; end_scores f32 [B] (optional) = scores[b, end_b - 1],
  // the last valid token of each row whatever the padding side.
  void scores(const Tensor& scores, const Tensor& end_scores);
  // Backward for gradients of the scores (dscores [B,S]) and/or of the end scores
  // (dend_scores [B]); either may be undefined.
  void scores_backward(const Tensor& dscores, const Tensor& dend_scores);

  // ---- decode (inference engine) ---------------------------------------------------------------
  // One new token per sequence: tokens, positions, append_pos i32 [B]; the token's k/v go to
  // cache rows append_pos[b]; attention reads cache rows cache_ranges[b] = [begin, end) (the new
  // row included). Writes logits [B,V]. Uses the layer buffers (a training forward's
  // activations are no longer valid afterwards).
  void decode_step(const Tensor& tokens, const Tensor& positions, const KvCache& cache,
                   const Tensor& append_pos, const Tensor& cache_ranges, const Tensor& logits);

 private:
  struct LayerParams {
    Tensor in_norm, wq, wk, wv, wo, post_norm, wg, wu, wd;
  };
  struct LayerActs {
    Tensor xn1, rstd1, q, k, v, att, lse, hmid, rstd2, xn2, gate, up, act;
  };
  using AttendFn = std::function<void(int layer, const Tensor& q, const Tensor& k,
                                      const Tensor& v, const Tensor& att, const Tensor& lse)>;

  // The handles of the activation plan's entries, in the order plan_act_entries adds them.
  struct ActHandles {
    struct Layer {
      size_t xn1, rstd1, q, k, v, att, lse, hmid, rstd2, xn2, gate, up, act;
    };
    std::vector<size_t> resid;
    std::vector<Layer> layers;
    size_t inv = 0, proj = 0, xnf = 0, rstdf = 0, gath = 0, gath_idx = 0;
    std::vector<size_t> pack, bwd, head;
  };
  // The two plans, from the config and options alone (the constructor and plan_memory both
  // call these: one source for what the model allocates). Param handle i = infos index i.
  static ArenaPlan plan_param_entries(const LlamaConfig& cfg, Head head, DType master,
                                      std::vector<ParamInfo>* infos);
  static ArenaPlan plan_act_entries(const LlamaConfig& cfg, const LlamaOptions& opts,
                                    const PrecisionPlan& prec, ActHandles* handles);
  void plan_params();
  int64_t num_flat() const {
    return int64_t(param_plan_.total_bytes() / dtype_size(prec_.master));
  }
  void plan_acts();
  LayerParams layer_params(const std::vector<Tensor>& views, int l) const;
  Tensor lm_weight(const std::vector<Tensor>& views) const;
  const LayerActs& acts(int l) const;
  Tensor resid(int l) const;
  void set_batch(const Batch& batch);
  // The layers' linear_fwd: linear_fwd_rows in a decode step (a few rows; csrc/ops/gemm.h).
  void linear(const Tensor& x, const Tensor& w, const Tensor& y) const;
  // Runs layer l on `rows` tokens (the rows layout: packed when the batch is): the input
  // residual stream is x + residual (residual may be undefined) and is stored in resid_out
  // when defined.
  void layer_forward(int l, int64_t rows, const Tensor& positions, const Tensor& x,
                     const Tensor& residual, const Tensor& resid_out, const AttendFn& attend);
  // All layers and the final norm on T tokens whose embeddings are in resid(0).
  void run_layers(int64_t T, const Tensor& positions, const AttendFn& attend);
  // Attention of the training forward on q, k, v in the rows layout, writing att in the rows
  // layout; the padded q, k, v and attention output stay in layer l's buffers for the backward.
  void train_attend(int l, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& att,
                    const Tensor& lse);
  // Where layer l's q, k, v and attention output are computed in the rows layout: the shared
  // packed buffers when the batch is packed, else the layer's own (padded) buffers.
  struct RowBuffers {
    Tensor q, k, v, att;
  };
  RowBuffers row_buffers(int l) const;
  // The token ids and positions of the rows layout.
  Tensor row_tokens() const;
  Tensor row_positions() const;
  // padded [T, w] → packed [R, w] and back (pad rows of the padded copy repeat a valid row:
  // nothing reads them); both are row gathers.
  void to_packed(const Tensor& padded, const Tensor& packed) const;
  void to_padded(const Tensor& packed, const Tensor& padded) const;
  // Rows-layout values [R, w] into a batch-layout output [T, w], 0 at pad positions.
  void scatter_rows(const Tensor& rows, const Tensor& out) const;
  // The row of the rows layout that holds flat position b * S + t (an Error outside the
  // row's range).
  int32_t row_of(int64_t b, int64_t t, const char* op) const;
  // The LM head's rows of the last token_logprobs call: compact (only rows with a target)
  // or every row of the rows layout.
  Tensor head_input() const;
  void lm_backward();
  // Backward from the gradient of the final-norm output (dxnf [T,H]) to every parameter.
  void trunk_backward(const Tensor& dxnf);
  void lm_chunks(bool backward, const Tensor& dlogp);
  void require_training(const char* what) const;
  void require_forward(const char* what) const;
  // The parameter source (see the header comment).
  int head_unit() const;
  void use_unit(int u);
  void open_grads(int u);
  void close_grads();
  Tensor score_bias();
  void setup_shards();

  Context* ctx_;
  LlamaConfig cfg_;
  LlamaOptions opts_;
  PrecisionPlan prec_;
  int64_t H_, I_, L_, nh_, nkv_, hd_, V_, qdim_, kvdim_;
  float eps_, scale_;

  std::vector<ParamInfo> infos_;
  std::map<std::string, size_t> index_;  // name → plan handle (= index into infos_)
  // Handles the step uses, looked up once (a lookup by name builds a std::string per call);
  // kNoHandle where the model has no such parameter.
  static constexpr size_t kNoHandle = ~size_t(0);
  size_t final_norm_h_ = kNoHandle, lm_head_h_ = kNoHandle, score_w_h_ = kNoHandle,
         score_b_h_ = kNoHandle;
  ArenaPlan param_plan_, act_plan_;
  Arena params_, grads_, acts_arena_;
  Buffer work_buf_;                    // working copy (empty without one)
  std::unique_ptr<ParamShards> shards_;  // sharded storage (null without sharding)
  std::vector<std::vector<size_t>> unit_handles_;  // parameter handles of each unit
  int open_unit_ = -1;                 // the unit whose gradient views are open
  std::vector<Tensor> pv_, wv_, gv_;   // per-parameter views: master, working, grads
  std::vector<LayerActs> layer_acts_;
  std::vector<Tensor> resid_;
  Tensor inv_freq_, proj_out_, xnf_, rstdf_, gath_, gath_idx_;
  // packed rows
  Tensor pk_tokens_, pk_positions_, pk_index_, pk_unindex_, pk_q_, pk_k_, pk_v_, pk_att_;
  // backward buffers
  Tensor dresid_, dhmid_, dxn_, dact_, datt_, dq_, dk_, dv_;
  // LM head
  // (compacted to the rows with a target: head_lse_, head_logp_, head_targets_, head_dlogp_ and
  // head_x_ hold head_n_ rows; head_row_idx_ / head_flat_idx_ say which row and which flat
  // position each one is)
  Tensor head_lse_, head_logp_, head_targets_, head_dlogp_, logits_chunk_;
  Tensor head_x_, head_row_idx_, head_flat_idx_;
  Tensor dlogits_chunk_;  // = logits_chunk_ unless the logits dtype differs from the acts'
  // score head
  Tensor ones_, dscore_, end_idx_;
  Tensor dscore_act_;     // = dscore_ unless the acts are not fp32

  // The current batch (views of the caller's tensors) and host copies of its ranges. T_ = B_ S_
  // positions; R_ rows in the rows layout (the valid tokens when packed_, else T_).
  int64_t B_ = 0, S_ = 0, T_ = 0, R_ = 0;
  bool packed_ = false;
  bool decoding_ = false;  // run_layers is running a decode step
  Batch batch_;
  std::vector<int32_t> host_ranges_, host_targets_, host_idx_;
  std::vector<int32_t> host_tokens_, host_positions_, host_pack_, host_unpack_;
  // LM head rows of the last token_logprobs: count, whether compacted, and host copies.
  int64_t head_n_ = 0;
  bool head_compact_ = false;
  std::vector<int32_t> host_head_rows_, host_head_flat_, host_head_targets_;
  std::vector<float> host_f32_;
  bool have_forward_ = false;
  // The logits chunk holds the logits of every row of the last forward (one chunk covered
  // them all), so the LM head's backward reuses them instead of recomputing the GEMM.
  bool logits_cached_ = false;
  int64_t ce_count_ = 0;
};

// Next-token targets for a padded batch: targets[b,t] = tokens[b,t+1] for begin <= t < end-1,
// else -100. Host vectors (row-major [B,S]); ranges [B,2]. With label_begin (one column index
// per row, e.g. where the answer starts), only tokens at t+1 >= label_begin[b] are targets:
// the label mask of supervised fine-tuning, where prompt tokens carry no loss.
std::vector<int32_t> next_token_targets(const std::vector<int32_t>& tokens,
                                        const std::vector<int32_t>& ranges, int64_t B,
                                        int64_t S, const std::vector<int32_t>& label_begin = {});

}  // namespace beaver::model
