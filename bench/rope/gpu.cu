// GPU cases of bench_rope: in-place rotary embedding of q at LLaMA-7B size (32 heads of 128),
// bf16 and f32, forward. Minimum bytes: read and write x once (+ positions and inv_freq).
#include <cmath>
#include <vector>

#include "csrc/ops/rope.h"
#include "gpu_util.h"

namespace {

using namespace beaver;
using namespace beaver::bench;

void gpu_rope_apply(benchmark::State& state, DType d, int64_t T, int64_t nh, int64_t hd) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  const double bytes = 2.0 * double(T * nh * hd) * double(dtype_size(d)) + 4.0 * double(T);
  std::vector<OwnedTensor> xs;
  for (int i = rotation_count(*ctx, bytes); i > 0; --i)
    xs.push_back(device_random(*ctx, d, {T, nh, hd}, 10 + uint64_t(i)));
  const OwnedTensor pos = device_ids(*ctx, T, 4096, 3);
  std::vector<float> f(size_t(hd / 2));
  for (int64_t i = 0; i < hd / 2; ++i)
    f[size_t(i)] = float(std::pow(10000.0, -2.0 * double(i) / double(hd)));
  const OwnedTensor inv_freq(DType::F32, {hd / 2}, Device::CUDA);
  device_memcpy(inv_freq.view().data, Device::CUDA, f.data(), Device::CPU, f.size() * 4);
  time_calls(state, *ctx, 20, [&](int64_t call) {
    ops::cuda::rope_apply(*ctx, xs[size_t(call) % xs.size()], pos, inv_freq, false);
  });
  report_bytes(state, bytes);
}

}  // namespace

BEAVER_GPU_CEILINGS();
BENCHMARK_CAPTURE(gpu_rope_apply, bf16_T8192_nh32_d128, beaver::DType::BF16, 8192, 32, 128)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_rope_apply, f32_T8192_nh32_d128, beaver::DType::F32, 8192, 32, 128)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
