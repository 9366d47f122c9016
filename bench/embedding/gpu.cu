// GPU cases of bench_embedding: lookup and deterministic backward at LLaMA-7B size (V = 32000,
// H = 4096), bf16 table and f32 gradient table. Minimum bytes: forward reads T rows and writes
// T rows; backward reads ids and dout and writes the whole dtable once (it is zeroed: rows of
// unseen ids must read 0), plus the sort's ids and positions.
#include <vector>

#include "csrc/ops/embedding.h"
#include "gpu_util.h"

namespace {

using namespace beaver;
using namespace beaver::bench;

void gpu_embedding_fwd(benchmark::State& state, DType d, int64_t T, int64_t V, int64_t H) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  const double es = double(dtype_size(d));
  const double bytes = 2.0 * double(T * H) * es + 4.0 * double(T);
  const OwnedTensor table = device_random(*ctx, d, {V, H}, 1);
  std::vector<OwnedTensor> ids, outs;
  for (int i = rotation_count(*ctx, bytes); i > 0; --i) {
    ids.push_back(device_ids(*ctx, T, uint32_t(V), 10 + uint64_t(i)));
    outs.emplace_back(d, Shape{T, H}, Device::CUDA);
  }
  time_calls(state, *ctx, 20, [&](int64_t call) {
    const size_t k = size_t(call) % ids.size();
    ops::cuda::embedding_fwd(*ctx, ids[k], table, outs[k]);
  });
  report_bytes(state, bytes);
}

void gpu_embedding_bwd(benchmark::State& state, DType d, int64_t T, int64_t V, int64_t H) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  const double es = double(dtype_size(d));
  const double bytes = double(T * H) * es + double(V * H) * 4.0 + 4.0 * double(T);
  const OwnedTensor ids = device_ids(*ctx, T, uint32_t(V), 7);
  const OwnedTensor dout = device_random(*ctx, d, {T, H}, 8);
  const OwnedTensor dtable(DType::F32, {V, H}, Device::CUDA);
  time_calls(state, *ctx, 5,
             [&](int64_t) { ops::cuda::embedding_bwd(*ctx, ids, dout, dtable, false); });
  report_bytes(state, bytes);
}

}  // namespace

BEAVER_GPU_CEILINGS();
BENCHMARK_CAPTURE(gpu_embedding_fwd, bf16_T8192_V32000_H4096, beaver::DType::BF16, 8192, 32000, 4096)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_embedding_fwd, f32_T8192_V32000_H4096, beaver::DType::F32, 8192, 32000, 4096)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gpu_embedding_bwd, bf16_T8192_V32000_H4096, beaver::DType::BF16, 8192, 32000, 4096)
    ->UseManualTime()->Unit(benchmark::kMicrosecond);
