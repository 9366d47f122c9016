// Rotary position embedding in the rotate-half (HF) layout, in place.
// x is [T, n_heads, head_dim]; positions i32 [T]; inv_freq f32 [head_dim/2] on the ctx device.
// For each head and i < d/2 (d = head_dim), with angle = float(pos[t]) * inv_freq[i]
// (one fp32 multiply, cos/sin in fp32, as HF computes them):
//   x[i]'     = x[i]     * cos - x[i+d/2] * sin
//   x[i+d/2]' = x[i+d/2] * cos + x[i]     * sin
// inverse = true rotates by -angle: that is the backward (the rotation is orthogonal).
// rope_inv_freq gives theta^(-2i/d), with llama3 frequency scaling when requested.
#pragma once

#include <cstdint>
#include <vector>

#include "csrc/context.h"

namespace beaver::ops {

struct RopeScaling {
  bool llama3 = false;  // HF rope_scaling {rope_type: llama3}
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
};

std::vector<float> rope_inv_freq(int head_dim, double theta, const RopeScaling& scaling);

void rope_apply(Context& ctx, const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
                bool inverse);
// q [T, nh, d] and k [T, nkv, d] in place (forward), or their gradients (backward).
void rope_fwd(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& positions,
              const Tensor& inv_freq);
void rope_bwd(Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& positions,
              const Tensor& inv_freq);

namespace cpu {
void rope_apply(Context& ctx, const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
                bool inverse);
}  // namespace cpu
namespace cuda {
void rope_apply(Context& ctx, const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
                bool inverse);
}  // namespace cuda

}  // namespace beaver::ops
