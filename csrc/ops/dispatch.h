// How an op family routes a call: the public function (namespace beaver::ops) checks shapes,
// dtypes and devices once, then calls the CPU twin (beaver::ops::cpu, csrc/ops/<family>.cpp)
// or the CUDA kernel launcher (beaver::ops::cuda, kernels/<family>.cu). In a build without
// CUDA the CUDA branch throws a clear error instead of failing to link. Every dispatched call
// runs inside a profiler range named after the op (csrc/profile.h).
#pragma once

#include <initializer_list>
#include <string_view>

#include "csrc/context.h"
#include "csrc/profile.h"
#include "csrc/tensor.h"

namespace beaver::ops {

// Every defined tensor must live on the context's device.
void expect_on(const Context& ctx, std::initializer_list<const Tensor*> ts, std::string_view op);
[[noreturn]] void no_cuda_backend(std::string_view op);

}  // namespace beaver::ops

// The CUDA branch of BEAVER_DISPATCH: the launcher, or (without CUDA) the named error.
#ifdef BEAVER_WITH_CUDA
#define BEAVER_DISPATCH_CUDA_(name, ...) ::beaver::ops::cuda::name(__VA_ARGS__)
#else
#define BEAVER_DISPATCH_CUDA_(name, ...) ::beaver::ops::no_cuda_backend(#name)
#endif

#define BEAVER_DISPATCH(ctx, name, ...)                           \
  do {                                                            \
    const ::beaver::ProfileRange beaver_op_range_("op/" #name);   \
    if ((ctx).is_cpu())                                           \
      ::beaver::ops::cpu::name(__VA_ARGS__);                      \
    else                                                          \
      BEAVER_DISPATCH_CUDA_(name, __VA_ARGS__);                   \
  } while (0)
