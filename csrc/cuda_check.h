// Check macros for CUDA runtime, cuBLAS and NCCL status codes. Each failure names the call,
// the library's own error string, and the source file and line.
#pragma once

#include <cuda_runtime.h>

#include "csrc/error.h"

#define BEAVER_CUDA_CHECK(expr)                                                           \
  do {                                                                                    \
    const cudaError_t beaver_err_ = (expr);                                               \
    if (beaver_err_ != cudaSuccess) [[unlikely]]                                          \
      ::beaver::throw_error(__FILE__, __LINE__,                                           \
                            ::beaver::cat("CUDA error in " #expr ": ",                    \
                                          cudaGetErrorString(beaver_err_)));              \
  } while (0)

// After a kernel launch: catches bad launch configurations at the launch site.
#define BEAVER_CUDA_LAUNCH_CHECK() BEAVER_CUDA_CHECK(cudaGetLastError())

#define BEAVER_CUBLAS_CHECK(expr)                                                         \
  do {                                                                                    \
    const auto beaver_st_ = (expr);                                                       \
    if (beaver_st_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                                 \
      ::beaver::throw_error(__FILE__, __LINE__,                                           \
                            ::beaver::cat("cuBLAS error in " #expr ": status ",           \
                                          int(beaver_st_)));                              \
  } while (0)

#define BEAVER_NCCL_CHECK(expr)                                                           \
  do {                                                                                    \
    const auto beaver_st_ = (expr);                                                       \
    if (beaver_st_ != ncclSuccess) [[unlikely]]                                           \
      ::beaver::throw_error(__FILE__, __LINE__,                                           \
                            ::beaver::cat("NCCL error in " #expr ": ",                    \
                                          ncclGetErrorString(beaver_st_)));               \
  } while (0)
