// GPU cases of bench_swiglu: the LLaMA-7B MLP gate (I = 11008), bf16 and f32. Minimum bytes:
// forward reads gate and up and writes out (3 elements each); backward reads gate, up, dout
// and writes dgate, dup (5 elements each).
#include <vector>

#include "csrc/ops/swiglu.h"
#include "gpu_util.h"

namespace {

using namespace beaver;
using namespace beaver::bench;

struct Set {
  OwnedTensor gate, up, dout, o1, o2;
};

void gpu_swiglu(benchmark::State& state, DType d, int64_t T, int64_t I, bool backward) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  const double bytes = (backward ? 5.0 : 3.0) * double(T * I) * double(dtype_size(d));
  std::vector<Set> sets;
  for (int i = rotation_count(*ctx, bytes); i > 0; --i)
    sets.push_back({device_random(*ctx, d, {T, I}, 10 + uint64_t(i), -4.0f, 4.0f),
                    device_random(*ctx, d, {T, I}, 20 + uint64_t(i)),
                    device_random(*ctx, d, {T, I}, 30 + uint64_t(i)),
                    OwnedTensor(d, {T, I}, Device::CUDA), OwnedTensor(d, {T, I}, Device::CUDA)});
  time_calls(state, *ctx, 20, [&](int64_t call) {
    const Set& s = sets[size_t(call) % sets.size()];
    if (backward)
      ops::cuda::swiglu_bwd(*ctx, s.gate, s.up, s.dout, s.o1, s.o2);
    else
      ops::cuda::swiglu_fwd(*ctx, s.gate, s.up, s.o1);
  });
  report_bytes(state, bytes);
}

}  // namespace

BEAVER_GPU_CEILINGS();
BENCHMARK_CAPTURE(gpu_swiglu, fwd_bf16_T8192_I11008, beaver::DType::BF16, 8192, 11008, false)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_swiglu, bwd_bf16_T8192_I11008, beaver::DType::BF16, 8192, 11008, true)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_swiglu, fwd_f32_T8192_I11008, beaver::DType::F32, 8192, 11008, false)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
