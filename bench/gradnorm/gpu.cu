// GPU cases of bench_gradnorm: global gradient norm (+ clip coefficient) over a 7B-like set of
// 291 bf16 gradient tensors (256M elements in all), and scale_by over the same set. Minimum
// bytes: the norm reads every gradient once; scale_by reads and writes every gradient once.
#include <span>
#include <vector>

#include "csrc/ops/elementwise.h"
#include "csrc/ops/gradnorm.h"
#include "gpu_util.h"

namespace {

using namespace beaver;
using namespace beaver::bench;

void gpu_gradnorm(benchmark::State& state, DType d, int64_t total, int tensors, bool scale) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  std::vector<OwnedTensor> owned;
  std::vector<Tensor> views;
  for (int i = 0; i < tensors; ++i)
    owned.push_back(device_random(*ctx, d, {total / tensors}, 10 + uint64_t(i), -1e-3f, 1e-3f));
  for (const auto& o : owned) views.push_back(o.view());
  const OwnedTensor norm(DType::F32, {1}, Device::CUDA), coef(DType::F32, {1}, Device::CUDA);
  ops::cuda::fill(*ctx, coef, 1.0f);
  const std::span<const Tensor> grads(views);
  time_calls(state, *ctx, 5, [&](int64_t) {
    if (scale) {
      ops::cuda::scale_by(*ctx, grads, coef);
    } else {
      ops::cuda::grad_norm(*ctx, grads, norm);
      ops::cuda::clip_coef(*ctx, norm, 1.0f, coef);
    }
  });
  const double bytes = double(total / tensors) * tensors * double(dtype_size(d));
  report_bytes(state, scale ? 2.0 * bytes : bytes);
}

}  // namespace

BEAVER_GPU_CEILINGS();
BENCHMARK_CAPTURE(gpu_gradnorm, norm_bf16_256M_291t, beaver::DType::BF16, int64_t(256) << 20, 291,
                  false)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_gradnorm, norm_f32_256M_291t, beaver::DType::F32, int64_t(256) << 20, 291,
                  false)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_gradnorm, scale_bf16_256M_291t, beaver::DType::BF16, int64_t(256) << 20, 291,
                  true)->UseManualTime()->Unit(benchmark::kMicrosecond);
