// Global gradient norm and clipping without a host round trip.
//   grad_norm:  norm f32 [1] = sqrt(sum over all tensors and elements of g^2). Deterministic:
//               fixed-size blocks reduced in a fixed order (fp64 partials on the CPU).
//   clip_coef:  coef f32 [1] = min(1, max_norm / (norm + 1e-6))   (PyTorch's clip_grad_norm_)
//   scale_by:   every element of every tensor *= coef[0] (coef read on the device)
//   clip_grad_norm: the three in sequence; coef can also be fed to adamw_step as grad_scale
//               instead of scaling in place (pass apply = false).
// Grad tensors: f32 (CPU); f32 or bf16 (CUDA).
#pragma once

#include <span>

#include "csrc/context.h"

namespace beaver::ops {

void grad_norm(Context& ctx, std::span<const Tensor> grads, const Tensor& norm);
void clip_coef(Context& ctx, const Tensor& norm, float max_norm, const Tensor& coef);
void scale_by(Context& ctx, std::span<const Tensor> grads, const Tensor& coef);
void clip_grad_norm(Context& ctx, std::span<const Tensor> grads, float max_norm,
                    const Tensor& norm, const Tensor& coef, bool apply = true);

namespace cpu {
void grad_norm(Context& ctx, std::span<const Tensor> grads, const Tensor& norm);
void clip_coef(Context& ctx, const Tensor& norm, float max_norm, const Tensor& coef);
void scale_by(Context& ctx, std::span<const Tensor> grads, const Tensor& coef);
}  // namespace cpu
namespace cuda {
void grad_norm(Context& ctx, std::span<const Tensor> grads, const Tensor& norm);
void clip_coef(Context& ctx, const Tensor& norm, float max_norm, const Tensor& coef);
void scale_by(Context& ctx, std::span<const Tensor> grads, const Tensor& coef);
}  // namespace cuda

}  // namespace beaver::ops
