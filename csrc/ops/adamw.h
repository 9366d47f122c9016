// AdamW over all parameters in one pass (PyTorch's AdamW formula, decoupled weight decay).
// All parameters live in one flat fp32 master vector [N]; grad [N] (f32 or bf16), m and v
// f32 [N]. For every element, with step >= 1:
//   g  = grad * grad_scale                        (grad_scale: f32 [1] on the device, e.g. the
//                                                  clip coefficient; undefined → 1)
//   p  = p * (1 - lr * wd)                        (wd = weight_decay inside a decay segment,
//                                                  0 elsewhere)
//   m  = beta1 * m + (1 - beta1) * g
//   v  = beta2 * v + (1 - beta2) * g^2
//   p  = p - (lr / (1 - beta1^step)) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
//   lowp (optional, bf16 or f16 [N]) = p rounded to nearest-even
// decay_segments lists the [offset, offset + size) ranges that get weight decay (biases and
// per-layer norm weights are simply left out). On CUDA this is one launch, no host sync.
#pragma once

#include <cstdint>
#include <vector>

#include "csrc/context.h"

namespace beaver::ops {

struct AdamWConfig {
  float lr = 1e-5f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  int64_t step = 1;  // 1-based, for bias correction
};

struct ParamSegment {
  int64_t offset = 0;
  int64_t size = 0;
};

void adamw_step(Context& ctx, const Tensor& master, const Tensor& grad, const Tensor& m,
                const Tensor& v, const Tensor& lowp, const Tensor& grad_scale,
                const std::vector<ParamSegment>& decay_segments, const AdamWConfig& cfg);

namespace cpu {
void adamw_step(Context& ctx, const Tensor& master, const Tensor& grad, const Tensor& m,
                const Tensor& v, const Tensor& lowp, const Tensor& grad_scale,
                const std::vector<ParamSegment>& decay_segments, const AdamWConfig& cfg);
}  // namespace cpu
namespace cuda {
void adamw_step(Context& ctx, const Tensor& master, const Tensor& grad, const Tensor& m,
                const Tensor& v, const Tensor& lowp, const Tensor& grad_scale,
                const std::vector<ParamSegment>& decay_segments, const AdamWConfig& cfg);
}  // namespace cuda

}  // namespace beaver::ops
