// CPU cases for the gradient norm and clipping: 16M f32 gradients in 64 tensors of odd size.
// Bytes: the norm reads every gradient once (4 B/element); clip with apply reads twice and
// writes once (12 B/element).
#include "bench_util.h"
#include "csrc/context.h"
#include "csrc/ops/gradnorm.h"
#include "tests/cases/gradnorm.h"

namespace beaver::bench {
namespace {

struct Grads {
  std::vector<OwnedTensor> owned;
  std::vector<Tensor> views;
  int64_t numel = 0;
};

Grads make_grads() {
  Grads g;
  for (int i = 0; i < cases::kGradnormBenchTensors; ++i) {
    g.owned.push_back(random_f32(Shape{cases::gradnorm_bench_size(i)}, uint64_t(i)));
    g.numel += g.owned.back().numel();
  }
  g.views.assign(g.owned.begin(), g.owned.end());
  return g;
}

void cpu_grad_norm(benchmark::State& state) {
  Context ctx = Context::cpu();
  auto g = make_grads();
  OwnedTensor norm(DType::F32, Shape{1});
  for (auto _ : state) {
    ops::grad_norm(ctx, g.views, norm);
    benchmark::DoNotOptimize(norm.ptr<float>());
  }
  set_bytes(state, 4.0 * double(g.numel));
  state.counters["threads"] = ctx.threads();
}
BENCHMARK(cpu_grad_norm)->Unit(benchmark::kMillisecond)->UseRealTime();

void cpu_clip_grad_norm(benchmark::State& state) {
  Context ctx = Context::cpu();
  auto g = make_grads();
  OwnedTensor norm(DType::F32, Shape{1}), coef(DType::F32, Shape{1});
  for (auto _ : state) {
    // max_norm above the norm after the first clip keeps the values from shrinking to zero.
    ops::clip_grad_norm(ctx, g.views, 1.0f, norm, coef);
    benchmark::DoNotOptimize(coef.ptr<float>());
  }
  set_bytes(state, 12.0 * double(g.numel));
  state.counters["threads"] = ctx.threads();
}
BENCHMARK(cpu_clip_grad_norm)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace beaver::bench
