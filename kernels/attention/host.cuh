// Host-side checks and launch helpers shared by the attention launchers.
#pragma once

#include <cstdint>
#include <initializer_list>
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

template <typename Kernel>
inline void set_smem(Kernel kernel, size_t bytes) {
  BEAVER_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         int(bytes)));
}

}  // namespace beaver::ops::cuda::attn
