// CPU cases for logprob / cross-entropy: T = 512 rows over a 32000-token vocabulary. Bytes are
// the logits read (forward) and the logits read plus dlogits written (backward).
#include "bench_util.h"
#include "csrc/context.h"
#include "csrc/ops/logprob.h"
#include "tests/cases/logprob.h"

namespace beaver::bench {
namespace {

constexpr int64_t kT = cases::kLogprobBench.T, kV = cases::kLogprobBench.V;

OwnedTensor targets() {
  OwnedTensor t(DType::I32, Shape{kT});
  PhiloxStream rng(3, 0);
  for (int64_t i = 0; i < kT; ++i) t.ptr<int32_t>()[i] = int32_t(rng.next_u32() % kV);
  return t;
}

void cpu_logprob_fwd(benchmark::State& state) {
  Context ctx = Context::cpu();
  auto logits = random_f32(Shape{kT, kV}, 1);
  auto tgt = targets();
  OwnedTensor logp(DType::F32, Shape{kT}), lse(DType::F32, Shape{kT});
  for (auto _ : state) {
    ops::logprob_fwd(ctx, logits, tgt, logp, lse);
    benchmark::DoNotOptimize(logp.ptr<float>());
  }
  set_bytes(state, double(kT) * kV * 4);
  state.counters["threads"] = ctx.threads();
}
BENCHMARK(cpu_logprob_fwd)->Unit(benchmark::kMillisecond)->UseRealTime();

void cpu_logprob_bwd(benchmark::State& state) {
  Context ctx = Context::cpu();
  auto logits = random_f32(Shape{kT, kV}, 1);
  auto tgt = targets();
  OwnedTensor logp(DType::F32, Shape{kT}), lse(DType::F32, Shape{kT});
  ops::logprob_fwd(ctx, logits, tgt, logp, lse);
  auto dlogp = random_f32(Shape{kT}, 2);
  OwnedTensor dlogits(DType::F32, Shape{kT, kV});
  for (auto _ : state) {
    ops::logprob_bwd(ctx, logits, tgt, lse, dlogp, dlogits);
    benchmark::DoNotOptimize(dlogits.ptr<float>());
  }
  set_bytes(state, 2.0 * double(kT) * kV * 4);
  state.counters["threads"] = ctx.threads();
}
BENCHMARK(cpu_logprob_bwd)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace beaver::bench
