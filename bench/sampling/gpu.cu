// GPU cases of bench_sampling: B = 64 rows of V = 32000 logits (f32 and bf16), temperature 1,
// top-k 50 with top-p 0.9, and top-p 0.9 alone. Bytes: one read of the logits (the kernel reads
// the row once per pass, from L1/L2 after the first). Logits are spread over [-8, 8) like a
// language model's. bench/torch_attention_baseline.py times the sort-based PyTorch sampler.
#include <vector>

#include "csrc/ops/sampling.h"
#include "gpu_util.h"

namespace {

using namespace beaver;
using namespace beaver::bench;

void gpu_sample(benchmark::State& state, DType dt, int top_k, float top_p) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  const int64_t B = 64, V = 32000;
  const double bytes = double(B * V) * double(dtype_size(dt));
  std::vector<OwnedTensor> sets;
  for (int i = rotation_count(*ctx, bytes); i > 0; --i)
    sets.push_back(device_random(*ctx, dt, {B, V}, 30 + uint64_t(i), -8.0f, 8.0f));
  OwnedTensor seeds_h(DType::I64, {B});
  for (int64_t b = 0; b < B; ++b) seeds_h.ptr<int64_t>()[b] = 1000 + b;
  const OwnedTensor seeds(DType::I64, {B}, Device::CUDA), tokens(DType::I32, {B}, Device::CUDA);
  copy_tensor(seeds, seeds_h);
  const ops::SamplingConfig cfg{1.0f, top_k, top_p};
  time_calls(state, *ctx, 20, [&](int64_t call) {
    ops::cuda::sample(*ctx, sets[size_t(call) % sets.size()], cfg, seeds, uint64_t(call),
                      tokens);
  });
  report_bytes(state, bytes);
}

}  // namespace

BEAVER_GPU_CEILINGS();
BENCHMARK_CAPTURE(gpu_sample, f32_B64_V32000_k50_p0.9, beaver::DType::F32, 50, 0.9f)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_sample, f32_B64_V32000_p0.9, beaver::DType::F32, 0, 0.9f)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_sample, bf16_B64_V32000_k50_p0.9, beaver::DType::BF16, 50, 0.9f)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_sample, bf16_B64_V32000_p0.9, beaver::DType::BF16, 0, 0.9f)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
