// GPU sampling benchmark: B = 64 rows of V = 32000 logits (f32 and bf16), temperature 1,
// top-k 50 with top-p 0.9, and top-p 0.9 alone. Bytes count one read of the logits. Each
// iteration times `kReps` launches with CUDA events and reports their median. Without a
// device the GPU cases are not registered and one line says why.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "bench_util.h"
#include "csrc/context.h"
#include "csrc/cuda_check.h"
#include "csrc/device.h"
#include "csrc/ops/sampling.h"

namespace beaver::bench {
namespace {

constexpr int kReps = 50;

template <typename Fn>
double median_seconds(Context& ctx, Fn&& fn) {
  const auto st = static_cast<cudaStream_t>(ctx.stream());
  std::vector<cudaEvent_t> ev(2 * kReps);
  for (auto& e : ev) BEAVER_CUDA_CHECK(cudaEventCreate(&e));
  for (int r = 0; r < kReps; ++r) {
    BEAVER_CUDA_CHECK(cudaEventRecord(ev[size_t(2 * r)], st));
    fn();
    BEAVER_CUDA_CHECK(cudaEventRecord(ev[size_t(2 * r + 1)], st));
  }
  BEAVER_CUDA_CHECK(cudaEventSynchronize(ev.back()));
  std::vector<float> ms(kReps);
  for (int r = 0; r < kReps; ++r)
    BEAVER_CUDA_CHECK(cudaEventElapsedTime(&ms[size_t(r)], ev[size_t(2 * r)], ev[size_t(2 * r + 1)]));
  for (auto& e : ev) BEAVER_CUDA_CHECK(cudaEventDestroy(e));
  std::nth_element(ms.begin(), ms.begin() + kReps / 2, ms.end());
  return double(ms[size_t(kReps / 2)]) * 1e-3;
}

// Args: top_k, top_p × 100, logits dtype (0 = f32, 1 = bf16).
void BM_SampleCuda(benchmark::State& state) {
  const int64_t B = 64, V = 32000;
  const ops::SamplingConfig cfg{1.0f, int(state.range(0)), float(state.range(1)) / 100.0f};
  const DType dt = state.range(2) == 0 ? DType::F32 : DType::BF16;
  Context ctx = Context::cuda();
  // Logits spread like a language model's: a few large values over a wide tail.
  OwnedTensor f = random_f32(Shape{B, V}, 9);
  for (int64_t i = 0; i < f.numel(); ++i) f.ptr<float>()[i] *= 8.0f;
  OwnedTensor host(dt, Shape{B, V});
  for (int64_t i = 0; i < f.numel(); ++i) {
    if (dt == DType::F32)
      host.ptr<float>()[i] = f.ptr<float>()[i];
    else
      host.ptr<bf16>()[i] = to_bf16(f.ptr<float>()[i]);
  }
  OwnedTensor logits(dt, Shape{B, V}, Device::CUDA);
  copy_tensor(logits, host);
  OwnedTensor seeds_h(DType::I64, Shape{B});
  for (int64_t b = 0; b < B; ++b) seeds_h.ptr<int64_t>()[b] = 1000 + b;
  OwnedTensor seeds(DType::I64, Shape{B}, Device::CUDA), tokens(DType::I32, Shape{B}, Device::CUDA);
  copy_tensor(seeds, seeds_h);
  uint64_t step = 0;
  auto run = [&] { ops::sample(ctx, logits, cfg, seeds, step++, tokens); };
  run();
  ctx.synchronize();
  for (auto _ : state) state.SetIterationTime(median_seconds(ctx, run));
  set_bytes(state, double(B * V) * double(dtype_size(dt)));
  state.SetLabel(std::string("B=64 V=32000 ") + std::string(dtype_name(dt)) +
                 " top_k=" + std::to_string(cfg.top_k) + " top_p=" + std::to_string(cfg.top_p));
}

struct Register {
  Register() {
    std::string why;
    if (!cuda_available(&why)) {
      std::fprintf(stderr, "bench_sampling: GPU cases skipped, no usable CUDA device (%s)\n",
                   why.c_str());
      return;
    }
    for (const int64_t dt : {0, 1}) {
      benchmark::RegisterBenchmark("SampleCuda", BM_SampleCuda)
          ->Args({50, 90, dt})
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark("SampleCuda", BM_SampleCuda)
          ->Args({0, 90, dt})
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
};
const Register register_gpu_cases;

}  // namespace
}  // namespace beaver::bench
