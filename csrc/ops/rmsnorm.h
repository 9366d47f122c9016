// RMSNorm fused with the residual add, over the last dimension H (rows T = all leading dims).
// Forward:
//   h        = x + residual               (residual undefined → h = x)
//   rstd[t]  = 1 / sqrt(mean_j h[t,j]^2 + eps)          (fp32)
//   out[t,:] = (h[t,:] * rstd[t]) * weight[:]           (HF LlamaRMSNorm order)
//   residual_out (optional) = h; it may alias residual (in-place update of the stream).
//   rstd f32 [T] (optional) is kept for the backward.
// Backward, with h the normalised input (residual_out of the forward, or x):
//   dh = dresidual + rstd * (weight*dout - hn * mean_j(hn_j * weight_j * dout_j)), hn = h*rstd
//   dx = dh (the gradient of both x and residual); dresidual optional (undefined → 0);
//   dweight (+)= sum_t dout[t,:] * hn[t,:]   (f32, reduced over t in a fixed order).
// CPU: f32. CUDA: x/residual/out bf16 or f32, weight same dtype, rstd and dweight f32.
#pragma once

#include "csrc/context.h"

namespace beaver::ops {

void rmsnorm_fwd(Context& ctx, const Tensor& x, const Tensor& residual, const Tensor& weight,
                 float eps, const Tensor& out, const Tensor& residual_out, const Tensor& rstd);
void rmsnorm_bwd(Context& ctx, const Tensor& dout, const Tensor& h, const Tensor& weight,
                 const Tensor& rstd, const Tensor& dresidual, const Tensor& dx,
                 const Tensor& dweight, bool accumulate_weight);

namespace cpu {
void rmsnorm_fwd(Context& ctx, const Tensor& x, const Tensor& residual, const Tensor& weight,
                 float eps, const Tensor& out, const Tensor& residual_out, const Tensor& rstd);
void rmsnorm_bwd(Context& ctx, const Tensor& dout, const Tensor& h, const Tensor& weight,
                 const Tensor& rstd, const Tensor& dresidual, const Tensor& dx,
                 const Tensor& dweight, bool accumulate_weight);
}  // namespace cpu
namespace cuda {
void rmsnorm_fwd(Context& ctx, const Tensor& x, const Tensor& residual, const Tensor& weight,
                 float eps, const Tensor& out, const Tensor& residual_out, const Tensor& rstd);
void rmsnorm_bwd(Context& ctx, const Tensor& dout, const Tensor& h, const Tensor& weight,
                 const Tensor& rstd, const Tensor& dresidual, const Tensor& dx,
                 const Tensor& dweight, bool accumulate_weight);
}  // namespace cuda

}  // namespace beaver::ops
