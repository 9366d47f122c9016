// KV cache append: writes the new rows of K and V at each sequence's position.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "csrc/cuda_check.h"
#include "csrc/ops/attention.h"
#include "kernels/attention/host.cuh"
#include "kernels/attention/tiles.cuh"

namespace beaver::ops::cuda {
namespace {

using namespace attn;  // NOLINT: the attention building blocks
using detail::stream_of;

// ---- KV append -----------------------------------------------------------------------------
// Per sequence the n new rows and their destination rows are both contiguous, so this is one
// vectorised copy per (sequence, k|v); rows that would land outside [0, Smax) are skipped.
template <typename V>
__global__ void kv_append_kernel(const V* k_new, const V* v_new, V* k_cache, V* v_cache,
                                 const int* pos, int n, int Smax, int64_t row_vecs) {
  const int b = int(blockIdx.y);
  const V* src = (blockIdx.z == 0 ? k_new : v_new) + int64_t(b) * n * row_vecs;
  const int p0 = pos[b];
  V* dst = (blockIdx.z == 0 ? k_cache : v_cache) + (int64_t(b) * Smax + p0) * row_vecs;
  const int64_t total = int64_t(n) * row_vecs;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = p0 + i / row_vecs;
    if (r >= 0 && r < Smax) dst[i] = src[i];
  }
}



}  // namespace

void kv_append(Context& ctx, const Tensor& k_new, const Tensor& v_new, const Tensor& k_cache,
               const Tensor& v_cache, const Tensor& pos) {
  constexpr const char* op = "kv_append";
  expect_dtype(k_new, DType::BF16, op, "k_new");
  expect_dtype(v_new, DType::BF16, op, "v_new");
  expect_dtype(k_cache, DType::BF16, op, "k_cache");
  expect_dtype(v_cache, DType::BF16, op, "v_cache");
  expect_dtype(pos, DType::I32, op, "pos");
  const int B = int(k_new.size(0)), n = int(k_new.size(1));
  const int Smax = int(k_cache.size(1));
  const int64_t row = k_new.size(2) * k_new.size(3);  // elements per token row
  if (B == 0 || n == 0 || row == 0) return;
  const cudaStream_t st = stream_of(ctx);
  const int threads = 256;
  const auto grid_of = [&](int64_t vecs) {  // (token rows x vectors, batch, k and v)
    return dim3(unsigned(std::clamp<int64_t>((int64_t(n) * vecs + threads - 1) / threads, 1, 1024)),
                unsigned(B), 2u);
  };
  bool vec16 = row % 8 == 0;
  for (const Tensor* t : {&k_new, &v_new, &k_cache, &v_cache})
    vec16 = vec16 && detail::aligned(t->data, 16);
  if (vec16) {  // 16-byte vectors
    const int64_t vecs = row / 8;
    kv_append_kernel<uint4><<<grid_of(vecs), threads, 0, st>>>(
        static_cast<const uint4*>(k_new.data), static_cast<const uint4*>(v_new.data),
        static_cast<uint4*>(k_cache.data), static_cast<uint4*>(v_cache.data),
        pos.ptr<int32_t>(), n, Smax, vecs);
  } else {
    kv_append_kernel<uint16_t><<<grid_of(row), threads, 0, st>>>(
        static_cast<const uint16_t*>(k_new.data), static_cast<const uint16_t*>(v_new.data),
        static_cast<uint16_t*>(k_cache.data), static_cast<uint16_t*>(v_cache.data),
        pos.ptr<int32_t>(), n, Smax, row);
  }
  BEAVER_CUDA_LAUNCH_CHECK();
}

}  // namespace beaver::ops::cuda
