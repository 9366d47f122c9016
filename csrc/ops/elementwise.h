// Small elementwise ops the graph needs between the fused ones.
//   convert: dst = src with dtype conversion (any float dtype to any float dtype, same numel);
//            rounding to bf16/f16 is nearest-even.
//   add:     out = a + b (same shape; out may alias a or b)
//   axpy:    y += alpha * x
//   scale:   x *= alpha (in place)
//   fill:    every element of x = value
// CPU: f32 (convert: any float dtype). CUDA: f32 and bf16.
#pragma once

#include "csrc/context.h"

namespace beaver::ops {

void convert(Context& ctx, const Tensor& src, const Tensor& dst);
void add(Context& ctx, const Tensor& a, const Tensor& b, const Tensor& out);
void axpy(Context& ctx, float alpha, const Tensor& x, const Tensor& y);
void scale(Context& ctx, const Tensor& x, float alpha);
void fill(Context& ctx, const Tensor& x, float value);

namespace cpu {
void convert(Context& ctx, const Tensor& src, const Tensor& dst);
void add(Context& ctx, const Tensor& a, const Tensor& b, const Tensor& out);
void axpy(Context& ctx, float alpha, const Tensor& x, const Tensor& y);
void scale(Context& ctx, const Tensor& x, float alpha);
void fill(Context& ctx, const Tensor& x, float value);
}  // namespace cpu
namespace cuda {
void convert(Context& ctx, const Tensor& src, const Tensor& dst);
void add(Context& ctx, const Tensor& a, const Tensor& b, const Tensor& out);
void axpy(Context& ctx, float alpha, const Tensor& x, const Tensor& y);
void scale(Context& ctx, const Tensor& x, float alpha);
void fill(Context& ctx, const Tensor& x, float value);
}  // namespace cuda

}  // namespace beaver::ops
