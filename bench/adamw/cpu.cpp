// CPU case for AdamW: 16M parameters, f32 grads, bf16 low-precision copy, weight decay on most
// segments. Bytes actually moved per parameter: read master, grad, m, v (16), write master,
// m, v (12) and the bf16 copy (2) = 30 (the GPU's 28 assumes bf16 grads).
#include "bench_util.h"
#include "csrc/context.h"
#include "csrc/ops/adamw.h"
#include "tests/cases/adamw.h"

namespace beaver::bench {
namespace {

constexpr int64_t kN = cases::kAdamwBenchParams;

void cpu_adamw(benchmark::State& state) {
  Context ctx = Context::cpu();
  auto master = random_f32(Shape{kN}, 1);
  auto grad = random_f32(Shape{kN}, 2);
  OwnedTensor m(DType::F32, Shape{kN}), v(DType::F32, Shape{kN}), low(DType::BF16, Shape{kN});
  zero_tensor(m);
  zero_tensor(v);
  // 64 "weight matrices" with a small undecayed "norm/bias" gap after each.
  std::vector<ops::ParamSegment> segs;
  const int64_t block = kN / 64;
  for (int64_t b = 0; b < 64; ++b) segs.push_back({b * block, block - 4096});
  ops::AdamWConfig cfg;
  cfg.weight_decay = 0.1f;
  for (auto _ : state) {
    ops::adamw_step(ctx, master, grad, m, v, low, Tensor{}, segs, cfg);
    ++cfg.step;
    benchmark::DoNotOptimize(master.ptr<float>());
  }
  set_bytes(state, 30.0 * double(kN));
  state.counters["threads"] = ctx.threads();
}
BENCHMARK(cpu_adamw)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace beaver::bench
