// GPU cases of bench_adamw: one AdamW step over 256M parameters (fp32 master, m, v; bf16 grads;
// bf16 low-precision copy written in the same pass; ~300 decay segments like a 7B model's
// matrices). Minimum bytes: 28 per parameter (read p, m, v, g; write p, m, v, lowp).
#include <vector>

#include "csrc/ops/adamw.h"
#include "gpu_util.h"

namespace {

using namespace beaver;
using namespace beaver::bench;

void gpu_adamw(benchmark::State& state, int64_t n, DType grad_dtype, bool with_lowp) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  const OwnedTensor p = device_random(*ctx, DType::F32, {n}, 1);
  const OwnedTensor g = device_random(*ctx, grad_dtype, {n}, 2, -0.01f, 0.01f);
  const OwnedTensor m = device_random(*ctx, DType::F32, {n}, 3, -1e-3f, 1e-3f);
  const OwnedTensor v = device_random(*ctx, DType::F32, {n}, 4, 0.0f, 1e-5f);
  const OwnedTensor lowp(DType::BF16, {n}, Device::CUDA);
  const OwnedTensor scale = device_random(*ctx, DType::F32, {1}, 5, 0.5f, 1.0f);
  std::vector<ops::ParamSegment> segs;
  const int64_t piece = n / 300;
  for (int64_t i = 0; i < 300; ++i) segs.push_back({i * piece, piece - 64});  // gaps: norms
  ops::AdamWConfig cfg;
  cfg.lr = 1e-5f;
  cfg.weight_decay = 0.01f;
  time_calls(state, *ctx, 3, [&](int64_t call) {
    cfg.step = 1 + call;
    ops::cuda::adamw_step(*ctx, p, g, m, v, with_lowp ? lowp.view() : Tensor{}, scale, segs, cfg);
  });
  report_bytes(state, double(n) * (16.0 + double(dtype_size(grad_dtype)) + (with_lowp ? 2.0 : 0.0)));
}

}  // namespace

BEAVER_GPU_CEILINGS();
BENCHMARK_CAPTURE(gpu_adamw, bf16grad_bf16copy_256M, int64_t(256) << 20, beaver::DType::BF16, true)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_adamw, f32grad_256M, int64_t(256) << 20, beaver::DType::F32, false)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
