// Host-side checks and launch helpers shared by the attention launchers.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <unordered_map>
#include <utility>

#include "csrc/cuda_check.h"
#include "csrc/ops/attention.h"
#include "kernels/attention/ptx.cuh"

namespace beaver::ops::cuda::attn {

// bf16, and 16-byte aligned: the kernels move rows with 16-byte copies.
inline void expect_bf16(std::initializer_list<std::pair<const Tensor*, const char*>> ts, const char* op) {
  for (const auto& [t, name] : ts) {
    expect_dtype(*t, DType::BF16, op, name);
    BEAVER_CHECK(detail::aligned(t->data, 16), op, ": ", name,
                 " must start on a 16-byte boundary for the CUDA backend");
  }
}

inline const bf16_t* cbf(const Tensor& t) { return reinterpret_cast<const bf16_t*>(t.data); }
inline bf16_t* mbf(const Tensor& t) { return reinterpret_cast<bf16_t*>(t.data); }

inline int head_dim_of(const Tensor& t, const char* op) {
  const int64_t d = t.size(-1);
  if (d != 64 && d != 128)
    BEAVER_FAIL(op, ": head dim ", d, " is not supported by the CUDA backend (64 or 128)");
  return int(d);
}

// The dynamic shared memory limit of each kernel, as set on this context's device so far:
// cudaFuncSetAttribute runs once per kernel (again only for a larger size), not every launch.
struct SmemLimits {
  std::unordered_map<const void*, size_t> bytes;
};

template <typename Kernel>
inline void set_smem(Context& ctx, Kernel kernel, size_t bytes) {
  size_t& done = ctx.backend_cache<SmemLimits>().bytes[reinterpret_cast<const void*>(kernel)];
  if (done >= bytes) return;
  BEAVER_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         int(bytes)));
  done = bytes;
}

// Resident blocks per multiprocessor of a kernel at a block size (no dynamic shared memory),
// queried once per context.
struct Occupancy {
  std::unordered_map<const void*, int> blocks;
};

template <typename Kernel>
inline int blocks_per_sm(Context& ctx, Kernel kernel, int threads) {
  int& n = ctx.backend_cache<Occupancy>().blocks[reinterpret_cast<const void*>(kernel)];
  if (n == 0) {
    BEAVER_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, 0));
    if (n < 1) n = 1;
  }
  return n;
}

}  // namespace beaver::ops::cuda::attn
