// CPU cases for sampling (tests/cases/sampling.h): a batch of 64 rows over a 32000-token
// vocabulary, logits spread over [-8, 8) so that top-p keeps a realistic fraction. Bytes: the
// logits read once.
#include <string>

#include "bench_util.h"
#include "csrc/context.h"
#include "csrc/ops/sampling.h"
#include "tests/cases/sampling.h"

namespace beaver::bench {
namespace {

constexpr int64_t kB = cases::kSamplingBenchRows, kV = cases::kSamplingBenchVocab;

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

// cpu_sample_<name> for every case.
const bool kRegistered = [] {
  for (const auto& c : cases::kSamplingBench)
    benchmark::RegisterBenchmark(("cpu_sample_" + std::string(c.name)).c_str(),
                                 [cfg = c.cfg](benchmark::State& s) { run(s, cfg); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  return true;
}();

}  // namespace
}  // namespace beaver::bench
