// GPU cases of bench_rmsnorm: fused residual add + RMSNorm forward and backward (bf16, f32),
// LLaMA-7B hidden size. Minimum bytes: forward reads x and residual and writes out and
// residual_out (4 * T * H elements, + weight and rstd); backward reads dout, h and dresidual
// and writes dx (4 * T * H elements, + weight, rstd and the dweight partials).
#include <vector>

#include "csrc/ops/rmsnorm.h"
#include "gpu_util.h"

namespace {

using namespace beaver;
using namespace beaver::bench;

struct Set {
  OwnedTensor a, b, c, d;  // fwd: x, residual, out, (unused) | bwd: dout, h, dresidual, dx
};

void gpu_rmsnorm_fwd(benchmark::State& state, DType d, int64_t T, int64_t H) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  const double es = double(dtype_size(d));
  const double bytes = 4.0 * double(T * H) * es + double(H) * es + 4.0 * double(T);
  std::vector<Set> sets;
  for (int i = rotation_count(*ctx, bytes); i > 0; --i)
    sets.push_back({device_random(*ctx, d, {T, H}, 10 + uint64_t(i)),
                    device_random(*ctx, d, {T, H}, 20 + uint64_t(i)),
                    OwnedTensor(d, {T, H}, Device::CUDA), OwnedTensor()});
  const OwnedTensor w = device_random(*ctx, d, {H}, 3, 0.5f, 1.5f);
  const OwnedTensor rstd(DType::F32, {T}, Device::CUDA);
  time_calls(state, *ctx, 20, [&](int64_t call) {
    const Set& s = sets[size_t(call) % sets.size()];
    ops::cuda::rmsnorm_fwd(*ctx, s.a, s.b, w, 1e-5f, s.c, s.b, rstd);  // residual in place
  });
  report_bytes(state, bytes);
}

void gpu_rmsnorm_bwd(benchmark::State& state, DType d, int64_t T, int64_t H) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  const double es = double(dtype_size(d));
  const double bytes = 4.0 * double(T * H) * es + double(H) * (es + 4.0) + 4.0 * double(T);
  std::vector<Set> sets;
  for (int i = rotation_count(*ctx, bytes); i > 0; --i)
    sets.push_back({device_random(*ctx, d, {T, H}, 30 + uint64_t(i)),
                    device_random(*ctx, d, {T, H}, 40 + uint64_t(i)),
                    device_random(*ctx, d, {T, H}, 50 + uint64_t(i)),
                    OwnedTensor(d, {T, H}, Device::CUDA)});
  const OwnedTensor w = device_random(*ctx, d, {H}, 3, 0.5f, 1.5f);
  const OwnedTensor rstd = device_random(*ctx, DType::F32, {T}, 4, 0.5f, 2.0f);
  const OwnedTensor dw(DType::F32, {H}, Device::CUDA);
  time_calls(state, *ctx, 20, [&](int64_t call) {
    const Set& s = sets[size_t(call) % sets.size()];
    ops::cuda::rmsnorm_bwd(*ctx, s.a, s.b, w, rstd, s.c, s.d, dw, false);
  });
  report_bytes(state, bytes);
}

}  // namespace

BEAVER_GPU_CEILINGS();
BENCHMARK_CAPTURE(gpu_rmsnorm_fwd, bf16_T8192_H4096, beaver::DType::BF16, 8192, 4096)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_rmsnorm_fwd, f32_T8192_H4096, beaver::DType::F32, 8192, 4096)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_rmsnorm_fwd, bf16_T1_H4096, beaver::DType::BF16, 1, 4096)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_rmsnorm_bwd, bf16_T8192_H4096, beaver::DType::BF16, 8192, 4096)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_rmsnorm_bwd, f32_T8192_H4096, beaver::DType::F32, 8192, 4096)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
