// Batched prefill + KV-cache decode (see engine.h for the layout of the batch and the cache).
#include "model/engine.h"

#include <algorithm>
#include <exception>
#include <sstream>

#include "csrc/log.h"
#include "csrc/ops/attention.h"
#include "csrc/timer.h"

namespace beaver::model {

namespace {

// Host → device, ordered on the context's stream (no host sync).
template <typename T>
void upload(const Context& ctx, const Tensor& dst, std::vector<T>& host, Shape shape) {
  ctx.copy(dst, Tensor(host.data(), dtype_of<T>::value, shape, Device::CPU));
}

}  // namespace

InferenceEngine::InferenceEngine(LlamaModel& model, int64_t max_total_len, bool cuda_graphs)
    : model_(&model),
      max_batch_(model.options().max_batch),
      max_prompt_(model.options().max_seq),
      max_total_(max_total_len),
      use_graphs_(cuda_graphs && !model.context().is_cpu() && !model.params_sharded()) {
  BEAVER_CHECK(model.head() == Head::LM, "InferenceEngine: the model has a score head");
  if (model.params_sharded()) comm_ = model.options().comm;  // decode gathers: a collective
  BEAVER_CHECK(max_total_len >= 1, "InferenceEngine: max_total_len ", max_total_len,
               " must be positive");
  const int64_t Bm = max_batch_, L = model.num_layers();
  plan_ = make_plan(model.config(), model.precision(), Bm, max_prompt_, max_total_);
  arena_ = Arena(plan_, model.context().device());
  model.context().zero(Tensor(arena_[0].data, DType::U8, Shape{int64_t(arena_.bytes())},
                              arena_.device()));
  for (int64_t l = 0; l < L; ++l) {
    cache_.k.push_back(arena_.get(cat("kv_cache.k.L", l)));
    cache_.v.push_back(arena_.get(cat("kv_cache.v.L", l)));
  }
  const Arena& a = arena_;
  tokens_ = a.get("decode.tokens");
  step_inputs_ = a.get("decode.step_inputs");
  positions_ = step_inputs_.slice(0, Bm);
  append_pos_ = step_inputs_.slice(Bm, 2 * Bm);
  ranges_ = step_inputs_.slice(2 * Bm, 4 * Bm).view({Bm, 2});
  h_step_.assign(size_t(4 * Bm), 0);
  seeds_ = a.get("decode.seeds");
  logits_ = a.get("decode.logits");
  next_ = a.get("decode.next");
  p_tokens_ = a.get("prefill.tokens");
  p_ranges_ = a.get("prefill.ranges");
  p_positions_ = a.get("prefill.positions");
  p_rows_ = a.get("prefill.last_rows");
  log_info("memory plan: inference engine (batch ", max_batch_, ", total length <= ", max_total_,
           ", KV cache ", dtype_name(model_->precision().act),
           comm_ ? cat(", on the parameters sharded over ", comm_->size(),
                       " ranks: units gathered per step, eager decode")
                 : std::string(),
           "): total ", format_bytes(plan_.total_bytes()), " (--log_level debug for the breakdown)");
  log_debug(budget());
}

ArenaPlan InferenceEngine::make_plan(const LlamaConfig& cfg, const PrecisionPlan& prec,
                                     int64_t Bm, int64_t max_prompt, int64_t max_total) {
  ArenaPlan p;
  const int64_t nkv = cfg.num_key_value_heads, hd = cfg.head_dim, V = cfg.vocab_size;
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    p.add(cat("kv_cache.k.L", l), prec.act, {Bm, max_total, nkv, hd});
    p.add(cat("kv_cache.v.L", l), prec.act, {Bm, max_total, nkv, hd});
  }
  p.add("decode.tokens", DType::I32, {Bm});
  p.add("decode.step_inputs", DType::I32, {4 * Bm});
  p.add("decode.seeds", DType::I64, {Bm});
  p.add("decode.logits", prec.logits, {Bm, V});
  p.add("decode.next", DType::I32, {Bm});
  p.add("prefill.tokens", DType::I32, {Bm * max_prompt});
  p.add("prefill.ranges", DType::I32, {Bm, 2});
  p.add("prefill.positions", DType::I32, {Bm * max_prompt});
  p.add("prefill.last_rows", DType::I32, {Bm});
  return p;
}

InferenceEngine::Memory InferenceEngine::memory_of(const ArenaPlan& plan) {
  Memory m;
  const auto& es = plan.entries();
  for (size_t i = 0; i < es.size(); ++i) {
    const size_t span = (i + 1 < es.size() ? es[i + 1].offset : plan.total_bytes()) - es[i].offset;
    if (es[i].name.rfind("kv_cache.", 0) == 0)
      m.kv_cache += span;
    else if (es[i].name == "decode.logits")
      m.logits += span;
    else
      m.other += span;
  }
  return m;
}

InferenceEngine::Memory InferenceEngine::plan_memory(const LlamaConfig& cfg, Device device,
                                                     int64_t max_batch, int64_t max_prompt,
                                                     int64_t max_total) {
  // The engine runs on the actor or the policy: its PrecisionPlan is the model's.
  return memory_of(make_plan(cfg, PrecisionPlan::for_device(device, true), max_batch, max_prompt,
                             max_total));
}

InferenceEngine::Memory InferenceEngine::memory() const {
  Memory m = memory_of(plan_);
  m.other = arena_.bytes() - m.kv_cache - m.logits;  // what the arena holds
  return m;
}

std::string InferenceEngine::budget() const {
  std::ostringstream os;
  plan_.print_budget(os, cat("inference engine (batch ", max_batch_, ", prompt <= ", max_prompt_,
                             ", total length <= ", max_total_, ", KV cache ",
                             dtype_name(model_->precision().act),
                             use_graphs_ ? ", CUDA-graph decode" : "",
                             comm_ ? ", sharded parameters" : "", ")"));
  return os.str();
}

bool InferenceEngine::any_rank(bool mine) const {
  if (!comm_) return mine;
  return comm_->all_reduce(mine ? 1.0 : 0.0, ReduceOp::Sum) > 0.0;
}

void InferenceEngine::check_prompts(const std::vector<std::vector<int32_t>>& prompts,
                                    const GenerateOptions& opts) const {
  const int64_t V = model_->vocab_size();
  BEAVER_CHECK(opts.max_new_tokens >= 1, "generate: max_new_tokens ", opts.max_new_tokens,
               " must be at least 1");
  BEAVER_CHECK(opts.pad_id >= 0 && opts.pad_id < V, "generate: pad_id ", opts.pad_id,
               " outside the vocabulary [0, ", V, ")");
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& p = prompts[i];
    BEAVER_CHECK(!p.empty(), "generate: prompt ", i, " is empty");
    BEAVER_CHECK(int64_t(p.size()) <= max_prompt_, "generate: prompt ", i, " has ", p.size(),
                 " tokens, the engine takes at most ", max_prompt_);
    BEAVER_CHECK(int64_t(p.size()) + opts.max_new_tokens - 1 <= max_total_, "generate: prompt ",
                 i, " (", p.size(), " tokens) + max_new_tokens ", opts.max_new_tokens,
                 " exceeds the cache length ", max_total_);
    for (size_t j = 0; j < p.size(); ++j)
      BEAVER_CHECK(p[j] >= 0 && p[j] < V, "generate: prompt ", i, " token ", j, " is ", p[j],
                   ", outside the vocabulary [0, ", V, ")");
  }
}

std::vector<Generation> InferenceEngine::generate(const std::vector<std::vector<int32_t>>& prompts,
                                                  const GenerateOptions& opts,
                                                  const TokenCallback& on_token) {
  // A collective engine agrees on the inputs before its first gather: a rank that refused its
  // prompts would otherwise leave the others waiting in a collective.
  std::exception_ptr refused;
  try {
    check_prompts(prompts, opts);
  } catch (const Error&) {
    if (!comm_) throw;
    refused = std::current_exception();
  }
  if (comm_ && !comm_->all_true(!refused)) {
    if (refused) std::rethrow_exception(refused);
    BEAVER_FAIL("generate: another rank's prompts were refused (a generation from sharded "
                "parameters stops on every rank)");
  }
  std::vector<Generation> out(prompts.size());
  // Batches of max_batch prompts; a collective engine runs as many as the rank with the most
  // (count 0: a dummy batch that only joins the gathers).
  const size_t Bm = size_t(max_batch_);
  for (size_t first = 0;; first += Bm) {
    const bool mine = first < prompts.size();
    if (!any_rank(mine)) break;
    run_batch(prompts, first, mine ? std::min(prompts.size() - first, Bm) : 0, opts, on_token, out);
  }
  return out;
}

void InferenceEngine::run_batch(const std::vector<std::vector<int32_t>>& prompts, size_t first,
                                size_t count, const GenerateOptions& opts,
                                const TokenCallback& on_token, std::vector<Generation>& out) {
  Context& ctx = model_->context();
  // count 0 (a collective engine's rank without prompts in this batch): one row holding a pad
  // token, finished from the start, so that the prefill and the decode steps still gather.
  const bool dummy = count == 0;
  const std::vector<int32_t> pad_prompt{opts.pad_id};
  const auto prompt = [&](int64_t b) -> const std::vector<int32_t>& {
    return dummy ? pad_prompt : prompts[first + size_t(b)];
  };
  const int64_t B = dummy ? 1 : int64_t(count);
  int64_t Sp = 0;
  for (int64_t b = 0; b < B; ++b) Sp = std::max<int64_t>(Sp, int64_t(prompt(b).size()));

  // ---- prefill: left-padded batch, k/v of every layer written into the cache --------------
  Timer t_prefill;
  h_tokens_.assign(size_t(B * Sp), opts.pad_id);
  h_positions_.assign(size_t(B * Sp), 0);
  h_ranges_.assign(size_t(2 * B), 0);
  h_rows_.assign(size_t(B), 0);
  h_seeds_.assign(size_t(B), 0);
  std::vector<int64_t> len(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    const auto& p = prompt(b);
    len[size_t(b)] = int64_t(p.size());
    const int64_t begin = Sp - len[size_t(b)];
    for (int64_t t = begin; t < Sp; ++t) {
      h_tokens_[size_t(b * Sp + t)] = p[size_t(t - begin)];
      h_positions_[size_t(b * Sp + t)] = int32_t(t - begin);
    }
    h_ranges_[size_t(2 * b)] = int32_t(begin);
    h_ranges_[size_t(2 * b + 1)] = int32_t(Sp);
    h_rows_[size_t(b)] = int32_t(b * Sp + Sp - 1);
    h_seeds_[size_t(b)] = int64_t(opts.seed + first + size_t(b));
    if (!dummy) stats_.prefill_tokens += len[size_t(b)];
  }
  const Tensor tok = p_tokens_.slice(0, B * Sp).view({B, Sp});
  const Tensor pos = p_positions_.slice(0, B * Sp).view({B, Sp});
  const Tensor rng = p_ranges_.slice(0, B);
  upload(ctx, tok, h_tokens_, {B, Sp});
  upload(ctx, pos, h_positions_, {B, Sp});
  upload(ctx, rng, h_ranges_, {B, 2});
  upload(ctx, p_rows_.slice(0, B), h_rows_, {B});
  upload(ctx, seeds_.slice(0, B), h_seeds_, {B});
  h_append_.assign(size_t(B), 0);
  upload(ctx, append_pos_.slice(0, B), h_append_, {B});
  const Tensor append0 = append_pos_.slice(0, B);
  model_->forward(Batch{tok, rng, pos}, [&](int l, const Tensor& k, const Tensor& v) {
    ops::kv_append(ctx, k, v, cache_.k[size_t(l)].slice(0, B), cache_.v[size_t(l)].slice(0, B),
                   append0);
  });
  const Tensor logits = logits_.slice(0, B), next = next_.slice(0, B), seeds = seeds_.slice(0, B);
  model_->logits_at(p_rows_.slice(0, B), logits);

  // ---- decode: step s samples the s-th new token ------------------------------------------
  // running: this rank still samples (an unfinished row, within max_new_tokens); once it is
  // not, a collective engine keeps stepping on the join inputs until no rank runs.
  std::vector<bool> done(size_t(B), dummy);
  int64_t active = dummy ? 0 : B;
  bool running = !dummy, joining = false;
  const size_t Bm = size_t(max_batch_);
  Timer t_decode;
  for (int64_t s = 0;; ++s) {
    if (s > 0) {
      if (running) {
        // Step inputs, packed so that one upload updates them in place.
        for (int64_t b = 0; b < B; ++b) {
          h_step_[size_t(b)] = int32_t(len[size_t(b)] + s - 1);             // position
          h_step_[Bm + size_t(b)] = int32_t(Sp + s - 1);                    // append row
          h_step_[2 * Bm + size_t(2 * b)] = int32_t(Sp - len[size_t(b)]);   // cache range
          h_step_[2 * Bm + size_t(2 * b + 1)] = int32_t(Sp + s);
        }
        upload(ctx, step_inputs_, h_step_, {4 * max_batch_});
      } else if (!joining) {
        // Join inputs (every row finished): each row rewrites its last prompt row, which it
        // alone attends to; in bounds whatever the step count.
        for (int64_t b = 0; b < B; ++b) {
          h_step_[size_t(b)] = int32_t(len[size_t(b)] - 1);
          h_step_[Bm + size_t(b)] = int32_t(Sp - 1);
          h_step_[2 * Bm + size_t(2 * b)] = int32_t(Sp - 1);
          h_step_[2 * Bm + size_t(2 * b + 1)] = int32_t(Sp);
        }
        upload(ctx, step_inputs_, h_step_, {4 * max_batch_});
        joining = true;
      }
      decode(B, s > 1);
      if (running)
        stats_.decode_tokens += active;
      else
        ++stats_.join_steps;
    }
    if (running) {
      ops::sample(ctx, logits, opts.sampling, seeds, uint64_t(s), next);
      h_next_.resize(size_t(B));
      // The host sync of the step: the sampled ids decide EOS and feed the callback.
      ctx.copy(Tensor(h_next_.data(), DType::I32, Shape{B}, Device::CPU), next);
      for (int64_t b = 0; b < B; ++b) {
        if (done[size_t(b)]) continue;
        const int32_t t = h_next_[size_t(b)];
        Generation& g = out[first + size_t(b)];
        if (opts.eos_id >= 0 && t == opts.eos_id) {
          g.stopped_at_eos = true;
          done[size_t(b)] = true;
          --active;
          continue;
        }
        g.tokens.push_back(t);
        if (on_token) on_token(first + size_t(b), t);
      }
    }
    if (s == 0) {
      ctx.synchronize();
      stats_.prefill_s += t_prefill.elapsed_s();
      t_decode.reset();
    }
    running = running && active > 0 && s + 1 < opts.max_new_tokens;
    if (!any_rank(running)) break;
  }
  ctx.synchronize();
  stats_.decode_s += t_decode.elapsed_s();
}

void InferenceEngine::decode(int64_t B, bool graph_ready_to_capture) {
  Context& ctx = model_->context();
  const auto step = [&] {
    ctx.copy(tokens_.slice(0, B), next_.slice(0, B));
    model_->decode_step(tokens_.slice(0, B), positions_.slice(0, B), cache_,
                        append_pos_.slice(0, B), ranges_.slice(0, B), logits_.slice(0, B));
  };
  if (!use_graphs_) {
    step();
    return;
  }
  auto it = graphs_.find(B);
  if (it != graphs_.end() && it->second.scratch != ctx.scratch(0)) {
    graphs_.erase(it);  // the scratch moved: recapture (after an eager step that sizes it)
    it = graphs_.end();
    graph_ready_to_capture = false;
  }
  if (it == graphs_.end()) {
    // The first step of a new batch size runs eagerly: it sizes the context's scratch (a
    // scratch that grows synchronises, which a capture forbids) and warms cuBLASLt.
    if (!graph_ready_to_capture) {
      step();
      return;
    }
    DecodeGraph g;
    try {
      g.graph.capture(ctx, step);
    } catch (const Error& e) {
      log_warn("decode: CUDA graph capture failed, decoding eagerly from now on: ", e.what());
      use_graphs_ = false;
      step();
      return;
    }
    g.scratch = ctx.scratch(0);
    it = graphs_.emplace(B, std::move(g)).first;
  }
  it->second.graph.replay(ctx);
  ++stats_.graph_replays;
}

}  // namespace beaver::model
