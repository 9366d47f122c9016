// Sampling the next token from logits [B, V] (f32 on the CPU; bf16 or f32 on CUDA) into
// tokens i32 [B], with per-sequence seeds i64 [B] and a step counter. Definition (both
// backends implement exactly this, so a seed means the same draw everywhere up to fp32
// rounding of the cumulative sums):
//   1. temperature == 0: greedy, the lowest index among the maximal logits.
//   2. Otherwise p_v ∝ exp((logit_v - max) / temperature).
//   3. top_k > 0: keep the tokens whose rank under (logit desc, index asc) is < top_k.
//   4. top_p < 1: among the kept tokens, keep the shortest prefix under (p desc, index asc)
//      whose mass is >= top_p times the kept mass (always at least one token).
//   5. u = philox_uniform(seed[b], stream = step, index = 0); the token is the smallest kept v
//      (in index order) whose cumulative kept mass exceeds u * total kept mass.
// No full vocabulary sort on the GPU (threshold search); the CPU twin may sort.
#pragma once

#include <cstdint>

#include "csrc/context.h"

namespace beaver::ops {

struct SamplingConfig {
  float temperature = 1.0f;  // 0 = greedy
  int top_k = 0;             // 0 = off
  float top_p = 1.0f;        // 1 = off
};

void sample(Context& ctx, const Tensor& logits, const SamplingConfig& cfg, const Tensor& seeds,
            uint64_t step, const Tensor& tokens);

namespace cpu {
void sample(Context& ctx, const Tensor& logits, const SamplingConfig& cfg, const Tensor& seeds,
            uint64_t step, const Tensor& tokens);
}  // namespace cpu
namespace cuda {
void sample(Context& ctx, const Tensor& logits, const SamplingConfig& cfg, const Tensor& seeds,
            uint64_t step, const Tensor& tokens);
}  // namespace cuda

}  // namespace beaver::ops
