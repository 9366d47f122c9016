// Fused log-softmax + gather, and token cross-entropy, over large vocabularies.
// logits [T, V] (rows = all leading dims), targets i32 [T].
//   logprob_fwd: lse[t] = logsumexp_v logits[t, v]   (f32 [T], kept for the backward)
//                logp[t] = logits[t, target[t]] - lse[t]  (f32 [T])
//   logprob_bwd: dlogits[t, v] = dlogp[t] * (1[v == target[t]] - exp(logits[t, v] - lse[t]))
// Rows whose target equals ignore_index give logp = 0, lse = 0 and a zero gradient row.
// Cross-entropy is the same op with the sign flipped: loss[t] = -logp[t], and its backward
// takes dloss[t]. Probabilities are never stored: the forward makes one pass for the max and
// the sum (online), the backward one pass writing dlogits (which may alias logits).
// Targets outside [0, V) other than ignore_index are an error (CPU) / ignored rows (CUDA).
// CPU: f32 logits. CUDA: logits bf16 or f32, dlogits same dtype as logits.
#pragma once

#include "csrc/context.h"

namespace beaver::ops {

constexpr int kIgnoreIndex = -100;

void logprob_fwd(Context& ctx, const Tensor& logits, const Tensor& targets, const Tensor& logp,
                 const Tensor& lse, int ignore_index = kIgnoreIndex);
void logprob_bwd(Context& ctx, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                 const Tensor& dlogp, const Tensor& dlogits, int ignore_index = kIgnoreIndex);
void cross_entropy_fwd(Context& ctx, const Tensor& logits, const Tensor& targets,
                       const Tensor& loss, const Tensor& lse, int ignore_index = kIgnoreIndex);
void cross_entropy_bwd(Context& ctx, const Tensor& logits, const Tensor& targets,
                       const Tensor& lse, const Tensor& dloss, const Tensor& dlogits,
                       int ignore_index = kIgnoreIndex);

// Backends: sign = +1 computes log-probs, -1 the cross-entropy (out = sign * logp; the
// backward multiplies dout by sign).
namespace cpu {
void logprob_fwd(Context& ctx, const Tensor& logits, const Tensor& targets,
                 const Tensor& out, const Tensor& lse, int ignore_index, float sign);
void logprob_bwd(Context& ctx, const Tensor& logits, const Tensor& targets,
                 const Tensor& lse, const Tensor& dout, const Tensor& dlogits,
                 int ignore_index, float sign);
}  // namespace cpu
namespace cuda {
void logprob_fwd(Context& ctx, const Tensor& logits, const Tensor& targets,
                 const Tensor& out, const Tensor& lse, int ignore_index, float sign);
void logprob_bwd(Context& ctx, const Tensor& logits, const Tensor& targets,
                 const Tensor& lse, const Tensor& dout, const Tensor& dlogits,
                 int ignore_index, float sign);
}  // namespace cuda

}  // namespace beaver::ops
