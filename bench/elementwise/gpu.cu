// GPU cases of bench_elementwise: convert f32 -> bf16 and bf16 -> f32, add and axpy in bf16,
// over 64M elements (well past the L2 cache). Minimum bytes: every input read once, every
// output written once.
#include "csrc/ops/elementwise.h"
#include "gpu_util.h"

namespace {

using namespace beaver;
using namespace beaver::bench;

constexpr int64_t kN = int64_t(64) << 20;

void gpu_convert(benchmark::State& state, DType from, DType to) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  const OwnedTensor src = device_random(*ctx, from, {kN}, 1);
  const OwnedTensor dst(to, {kN}, Device::CUDA);
  time_calls(state, *ctx, 10, [&](int64_t) { ops::cuda::convert(*ctx, src, dst); });
  report_bytes(state, double(kN) * double(dtype_size(from) + dtype_size(to)));
}

void gpu_add(benchmark::State& state, DType d) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  const OwnedTensor a = device_random(*ctx, d, {kN}, 1), b = device_random(*ctx, d, {kN}, 2);
  const OwnedTensor out(d, {kN}, Device::CUDA);
  time_calls(state, *ctx, 10, [&](int64_t) { ops::cuda::add(*ctx, a, b, out); });
  report_bytes(state, 3.0 * double(kN) * double(dtype_size(d)));
}

void gpu_axpy(benchmark::State& state, DType d) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  const OwnedTensor x = device_random(*ctx, d, {kN}, 1), y = device_random(*ctx, d, {kN}, 2);
  // alpha = 0 keeps y bounded over many calls; the kernel does the same work for any alpha.
  time_calls(state, *ctx, 10, [&](int64_t) { ops::cuda::axpy(*ctx, 0.0f, x, y); });
  report_bytes(state, 3.0 * double(kN) * double(dtype_size(d)));
}

}  // namespace

BEAVER_GPU_CEILINGS();
BENCHMARK_CAPTURE(gpu_convert, f32_to_bf16_64M, beaver::DType::F32, beaver::DType::BF16)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_convert, bf16_to_f32_64M, beaver::DType::BF16, beaver::DType::F32)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_add, bf16_64M, beaver::DType::BF16)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_axpy, bf16_64M, beaver::DType::BF16)->UseManualTime()->Unit(benchmark::kMicrosecond);
