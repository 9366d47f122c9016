// The inference engine: batched generation with a KV cache on top of the LLaMA graph.
//
// Prompts of different lengths are left-padded into one batch of width Sp (the longest
// prompt): row b's valid tokens are [Sp - len_b, Sp), its positions count from 0 at the first
// valid token. The prefill runs the training forward once (its k/v, after rotary, go straight
// into the cache rows [0, Sp)); every decode step then appends one token per row at cache row
// Sp + step - 1 (the same row for all sequences, thanks to the left padding) and attends to
// cache rows [Sp - len_b, Sp + step). The KV cache is one Arena, per layer k and v
// [B, Smax, nkv, head_dim].
//
// Sampling is ops::sample (greedy at temperature 0, otherwise temperature / top-k / top-p)
// with per-sequence seeds: sequence i of a generate() call draws with seed + i and step =
// number of tokens it has generated, so its output does not depend on which other prompts
// share its batch. Each sequence stops at EOS (not included in its tokens) or after
// max_new_tokens; the batch stops when all have (finished rows ride along until then: the
// batch is not compacted, which keeps every step's shapes fixed). Prefill and decode times and
// token counts are measured (decode tokens = tokens produced by decode steps for unfinished
// sequences).
//
// CUDA: the KV cache and the activations take the model's PrecisionPlan dtypes (bf16). A decode
// step (tokens ← last sampled ids, embedding → layers with kv_append + decode_attention → LM
// head) has fixed shapes and fixed buffers for a given batch B (the cache length Smax is fixed
// per engine), so it is captured once per B as a CUDA graph (after one eager step, which sizes
// the scratch areas and warms cuBLASLt) and replayed every later step; positions, append rows
// and cache ranges are updated in place in one packed device buffer before each replay.
// Sampling (ops::sample, on the device) runs after the graph, eagerly, because its step counter
// is a launch argument. Per step the host uploads the packed step inputs (4·B int32) and
// downloads the B sampled ids: that download is the one host sync of the decode loop (EOS and
// the token callback need the ids). Graphs can be disabled (eager steps, same numbers); a
// capture that fails (a kernel that is not graph-safe) logs a warning and falls back to eager.
//
// Sharded parameters (ZeRO stage 3, model/param_shards.h): the engine runs on the sharded model
// itself. The prefill and every decode step reach each unit through the model's parameter
// source (use_unit: unit 0, each layer, the final norm and the head, each all-gathered into a
// unit slot, the next unit prefetched unless BEAVER_ZERO_PREFETCH=0), so no full copy of the
// parameters exists, and every forward is a collective of all ranks. generate() is then a
// collective too, and makes every rank run the same sequence of gathers (HF generate's
// synced_gpus rule):
//   - every rank runs as many batches as the rank with the most (one all-reduce per batch); a
//     rank with no prompts left runs a one-row dummy batch (prefill and decode on a pad token,
//     nothing sampled, nothing returned);
//   - after each step the ranks agree on whether any of them still has an unfinished sequence
//     within its max_new_tokens (one all-reduce of a host value per step, after the download
//     of the sampled ids that the step already waits for); a rank whose sequences have all
//     finished keeps running decode steps on fixed in-bounds inputs (each row rewrites its last
//     prompt row and attends to it alone; nothing is sampled) until every rank is done.
// Sampled tokens are unchanged: row b still samples with seed + first + b at its own step
// count, and a finished row's values are never read. Prompts that one rank refuses are agreed
// on before any gather (every rank throws). Decode runs eagerly here, never as a CUDA graph: a
// step's unit all-gathers (NCCL on a side stream, waited on events, with host-side slot
// bookkeeping) cannot be captured, and a graph would replay stale slot contents.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "csrc/arena.h"
#include "csrc/cuda_graph.h"
#include "csrc/ops/sampling.h"
#include "model/llama.h"

namespace beaver::model {

struct GenerateOptions {
  ops::SamplingConfig sampling{};
  int64_t max_new_tokens = 128;
  int32_t eos_id = 2;  // < 0: never stop before max_new_tokens
  uint64_t seed = 0;   // sequence i samples with seed + i
  int32_t pad_id = 0;  // token id written into the left padding (never attended to)
};

struct Generation {
  std::vector<int32_t> tokens;  // generated tokens, EOS excluded
  bool stopped_at_eos = false;
};

struct GenerateStats {
  int64_t prefill_tokens = 0, decode_tokens = 0;
  int64_t graph_replays = 0;  // decode steps run as a CUDA graph replay
  // Collective engines: decode steps this rank ran with no unfinished sequence of its own (or in
  // a dummy batch), only to join the other ranks' unit gathers.
  int64_t join_steps = 0;
  double prefill_s = 0.0, decode_s = 0.0;
  double prefill_tokens_per_s() const { return prefill_s > 0 ? prefill_tokens / prefill_s : 0.0; }
  double decode_tokens_per_s() const { return decode_s > 0 ? decode_tokens / decode_s : 0.0; }
};

// Called for every generated token of every sequence (sequence = prompt index), in order;
// not called for the EOS that stops a sequence.
using TokenCallback = std::function<void(size_t sequence, int32_t token)>;

class InferenceEngine {
 public:
  // The model must have an LM head; its max_batch is the engine's batch and its max_seq the
  // longest prompt. max_total_len bounds prompt + generated tokens (the cache length Smax).
  // cuda_graphs: capture and replay decode steps on a CUDA context (ignored on the CPU).
  InferenceEngine(LlamaModel& model, int64_t max_total_len, bool cuda_graphs = true);

  std::vector<Generation> generate(const std::vector<std::vector<int32_t>>& prompts,
                                   const GenerateOptions& opts, const TokenCallback& on_token = {});
  // Totals over all generate() calls so far.
  const GenerateStats& stats() const { return stats_; }
  std::string budget() const;
  // Bytes of the engine's arena: the KV cache, the decode logits and the rest (step inputs).
  struct Memory {
    size_t kv_cache = 0, logits = 0, other = 0;
    size_t total() const { return kv_cache + logits + other; }
  };
  // What an engine over a model of `cfg` on `device` allocates for (max_batch, max_prompt,
  // max_total), from the plan the constructor builds (nothing is allocated).
  static Memory plan_memory(const LlamaConfig& cfg, Device device, int64_t max_batch,
                            int64_t max_prompt, int64_t max_total);
  Memory memory() const;  // what this engine allocated
  // Whether decode steps will use CUDA graphs (false on the CPU, when disabled, or after a
  // failed capture).
  bool uses_cuda_graphs() const { return use_graphs_; }
  // Whether generate() is a collective (the model's parameters are sharded): every rank must
  // call it as often as the others, with any number of prompts (zero included).
  bool collective() const { return comm_ != nullptr; }

 private:
  static ArenaPlan make_plan(const LlamaConfig& cfg, const PrecisionPlan& prec, int64_t max_batch,
                             int64_t max_prompt, int64_t max_total);
  static Memory memory_of(const ArenaPlan& plan);
  void run_batch(const std::vector<std::vector<int32_t>>& prompts, size_t first, size_t count,
                 const GenerateOptions& opts, const TokenCallback& on_token,
                 std::vector<Generation>& out);
  // One decode step for batch B: tokens ← next, then the model's decode_step into logits_.
  void decode(int64_t B, bool graph_ready_to_capture);
  // Collective engines: whether `mine` holds on any rank (one all-reduce); else `mine`.
  bool any_rank(bool mine) const;
  void check_prompts(const std::vector<std::vector<int32_t>>& prompts,
                     const GenerateOptions& opts) const;

  LlamaModel* model_;
  Communicator* comm_ = nullptr;  // the model's ranks when its parameters are sharded
  int64_t max_batch_, max_prompt_, max_total_;
  ArenaPlan plan_;
  Arena arena_;
  KvCache cache_;
  Tensor tokens_, positions_, append_pos_, ranges_, seeds_, logits_, next_;
  Tensor step_inputs_;  // i32 [4·Bm]: positions [0, Bm), append_pos [Bm, 2Bm), ranges after
  Tensor p_tokens_, p_ranges_, p_positions_, p_rows_;
  std::vector<int32_t> h_tokens_, h_positions_, h_append_, h_ranges_, h_next_, h_rows_, h_step_;
  std::vector<int64_t> h_seeds_;
  GenerateStats stats_;
  bool use_graphs_ = false;
  // Decode graph per batch size, with the context scratch pointer its kernels captured (split-KV
  // decode attention keeps partials in ctx.scratch): when other work (a training backward, a
  // larger batch) has grown the scratch since, the graph would read freed memory, so it is
  // dropped and captured again.
  struct DecodeGraph {
    CudaGraph graph;
    void* scratch = nullptr;
  };
  std::map<int64_t, DecodeGraph> graphs_;
};

}  // namespace beaver::model
