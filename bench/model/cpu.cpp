// End-to-end CPU rates of the LLaMA graph on a small random model (H=256, 4 layers, 4 heads,
// I=688, V=4000): a training step (forward + CE + full backward) in tokens/s, with and without
// activation recomputation, and generation (prefill and decode) in tokens/s through the
// inference engine. Counters: tokens/s and FLOP/s (6 · params · tokens for training,
// 2 · params per decoded token; attention FLOPs left out). The last argument of every case is
// the CPU thread count (1 and 2); bench/cpu_vs_torch.sh runs the same cases in PyTorch.
// Every case runs one untimed step (or generation) before timing: the first one page-faults
// the fresh arenas in, grows the context scratch and starts OpenMP's team, which is start-up
// cost, not the steady state being measured. Run with OMP_WAIT_POLICY=passive on a shared
// machine (see bench/README.md): libgomp's default spin-wait makes 2-thread steps several times
// slower as soon as another job holds a core. The CPU time column is the whole process's (every
// OpenMP thread), comparable with PyTorch's process CPU time in bench/cpu_vs_torch.py; the
// iteration count and the rate counters (tokens/s, FLOP/s) go by wall time.
#include <benchmark/benchmark.h>

#include <vector>

#include "bench_util.h"
#include "csrc/context.h"
#include "model/engine.h"
#include "model/llama.h"

namespace beaver::bench {
namespace {

model::LlamaConfig small_config() {
  model::LlamaConfig c;
  c.hidden_size = 256;
  c.intermediate_size = 688;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.head_dim = 64;
  c.vocab_size = 4000;
  c.max_position_embeddings = 1024;
  c.rms_norm_eps = 1e-5;
  return c;
}

// Weights ~ U(-0.05, 0.05), norm weights 1.
void randomise(const model::LlamaModel& m) {
  for (const auto& p : m.params()) {
    const Tensor t = m.param(p.name);
    if (p.is_norm) {
      std::fill(t.ptr<float>(), t.ptr<float>() + t.numel(), 1.0f);
      continue;
    }
    const OwnedTensor r = random_f32(p.shape, std::hash<std::string>{}(p.name));
    float* d = t.ptr<float>();
    for (int64_t i = 0; i < t.numel(); ++i) d[i] = 0.05f * r.ptr<float>()[i];
  }
}

double param_count(const model::LlamaModel& m) {
  double n = 0;
  for (const auto& p : m.params()) n += double(p.shape.numel());
  return n;
}

void cpu_train_step(benchmark::State& state) {
  const int64_t B = 4, S = state.range(0);
  const bool recompute = state.range(1) != 0;
  Context ctx = Context::cpu(int(state.range(2)));
  model::LlamaModel m(ctx, small_config(), {model::Head::LM, B, S, true, recompute, 0});
  randomise(m);
  std::vector<int32_t> tok(size_t(B * S)), pos(size_t(B * S)), rng;
  PhiloxStream r(1, 2);
  for (int64_t i = 0; i < B * S; ++i) {
    tok[size_t(i)] = int32_t(r.next_u32() % 4000);
    pos[size_t(i)] = int32_t(i % S);
  }
  for (int64_t b = 0; b < B; ++b) {
    rng.push_back(0);
    rng.push_back(int32_t(S));
  }
  OwnedTensor t(DType::I32, {B, S}), p(DType::I32, {B, S}), rg(DType::I32, {B, 2}),
      tg(DType::I32, {B, S});
  std::copy(tok.begin(), tok.end(), t.ptr<int32_t>());
  std::copy(pos.begin(), pos.end(), p.ptr<int32_t>());
  std::copy(rng.begin(), rng.end(), rg.ptr<int32_t>());
  const auto targets = model::next_token_targets(tok, rng, B, S);
  std::copy(targets.begin(), targets.end(), tg.ptr<int32_t>());
  const auto step = [&] {
    m.forward(model::Batch{t, rg, p});
    benchmark::DoNotOptimize(m.cross_entropy(tg));
    m.cross_entropy_backward();
  };
  step();  // warm-up, untimed
  for (auto _ : state) step();
  state.counters["tokens/s"] =
      benchmark::Counter(double(B * S), benchmark::Counter::kIsIterationInvariantRate);
  set_flops(state, 6.0 * param_count(m) * double(B * S));
}
BENCHMARK(cpu_train_step)
    ->ArgNames({"seq", "recompute", "threads"})
    ->Args({128, 0, 1})
    ->Args({128, 1, 1})
    ->Args({128, 0, 2})
    ->MeasureProcessCPUTime()
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void cpu_generate(benchmark::State& state) {
  const int64_t B = state.range(0), prompt = 32, new_tokens = 32;
  Context ctx = Context::cpu(int(state.range(1)));
  model::LlamaModel m(ctx, small_config(), {model::Head::LM, B, prompt, false, false, 0});
  randomise(m);
  model::InferenceEngine eng(m, prompt + new_tokens);
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(B),
                                            std::vector<int32_t>(static_cast<size_t>(prompt)));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < prompt; ++i) prompts[size_t(b)][size_t(i)] = int32_t(3 + 7 * b + i);
  model::GenerateOptions go;
  go.sampling.temperature = 0.0f;
  go.max_new_tokens = new_tokens;
  go.eos_id = -1;
  benchmark::DoNotOptimize(eng.generate(prompts, go));  // warm-up, untimed
  const model::GenerateStats warm = eng.stats();       // the counters leave it out
  for (auto _ : state) benchmark::DoNotOptimize(eng.generate(prompts, go));
  model::GenerateStats timed = eng.stats();
  timed.prefill_tokens -= warm.prefill_tokens;
  timed.decode_tokens -= warm.decode_tokens;
  timed.prefill_s -= warm.prefill_s;
  timed.decode_s -= warm.decode_s;
  state.counters["prefill tok/s"] = timed.prefill_tokens_per_s();
  state.counters["decode tok/s"] = timed.decode_tokens_per_s();
}
BENCHMARK(cpu_generate)
    ->ArgNames({"batch", "threads"})
    ->Args({1, 1})
    ->Args({8, 1})
    ->Args({1, 2})
    ->Args({8, 2})
    ->MeasureProcessCPUTime()
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace beaver::bench
