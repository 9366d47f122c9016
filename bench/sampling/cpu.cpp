// CPU cases for sampling: a batch of 64 rows over a 32000-token vocabulary, logits spread
// over [-8, 8) so that top-p keeps a realistic fraction. Bytes: the logits read once.
#include "bench_util.h"
#include "csrc/context.h"
#include "csrc/ops/sampling.h"

namespace beaver::bench {
namespace {

constexpr int64_t kB = 64, kV = 32000;

void run(benchmark::State& state, const ops::SamplingConfig& cfg) {
  Context ctx = Context::cpu();
  auto logits = random_f32(Shape{kB, kV}, 1);
  for (int64_t i = 0; i < kB * kV; ++i) logits.ptr<float>()[i] *= 8.0f;
  OwnedTensor seeds(DType::I64, Shape{kB}), tokens(DType::I32, Shape{kB});
  for (int64_t b = 0; b < kB; ++b) seeds.ptr<int64_t>()[b] = 1234 + b;
  uint64_t step = 0;
  for (auto _ : state) {
    ops::sample(ctx, logits, cfg, seeds, step++, tokens);
    benchmark::DoNotOptimize(tokens.ptr<int32_t>());
  }
  set_bytes(state, double(kB) * kV * 4);
  state.counters["threads"] = ctx.threads();
}

void cpu_sample_top_p_0_9(benchmark::State& state) { run(state, {1.0f, 0, 0.9f}); }
void cpu_sample_top_k_50(benchmark::State& state) { run(state, {1.0f, 50, 1.0f}); }
void cpu_sample_temperature(benchmark::State& state) { run(state, {0.8f, 0, 1.0f}); }
void cpu_sample_greedy(benchmark::State& state) { run(state, {0.0f, 0, 1.0f}); }
BENCHMARK(cpu_sample_top_p_0_9)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(cpu_sample_top_k_50)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(cpu_sample_temperature)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(cpu_sample_greedy)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace beaver::bench
