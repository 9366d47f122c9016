// SwiGLU gate of the LLaMA MLP: out = silu(gate) * up, elementwise over [T, I].
// Backward: dgate = dout * up * s * (1 + gate * (1 - s)), dup = dout * gate * s, s = sigmoid(gate).
// dgate/dup may alias gate/up (in place).
#pragma once

#include "csrc/context.h"

namespace beaver::ops {

void swiglu_fwd(Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& out);
void swiglu_bwd(Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& dout,
                const Tensor& dgate, const Tensor& dup);

namespace cpu {
void swiglu_fwd(Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& out);
void swiglu_bwd(Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& dout,
                const Tensor& dgate, const Tensor& dup);
}  // namespace cpu
namespace cuda {
void swiglu_fwd(Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& out);
void swiglu_bwd(Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& dout,
                const Tensor& dgate, const Tensor& dup);
}  // namespace cuda

}  // namespace beaver::ops
