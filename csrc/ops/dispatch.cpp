#include "csrc/ops/dispatch.h"

namespace beaver::ops {

void expect_on(const Context& ctx, std::initializer_list<const Tensor*> ts, std::string_view op) {
  for (const Tensor* t : ts) {
    if (t == nullptr || t->data == nullptr) continue;
    if (t->device != ctx.device())
      BEAVER_FAIL(op, ": tensor ", t->str(), " is not on the context's device (",
                  device_name(ctx.device()), ")");
  }
}

void no_cuda_backend(std::string_view op) {
  BEAVER_FAIL(op, ": called on a CUDA context, but this build has no CUDA backend");
}

}  // namespace beaver::ops
