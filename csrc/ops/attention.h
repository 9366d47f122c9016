// Causal self-attention with the flash algorithm's outputs, over a padded batch.
//
// Layout: q [B, S, nh, d]; k, v [B, S, nkv, d]; nh % nkv == 0 and query head h reads kv head
// h / (nh / nkv) (grouped-query attention by indexing, no K/V copies). ranges i32 [B, 2] gives
// each row's valid tokens [begin, end): query i in [begin, end) attends to keys j in
// [begin, i]. Left padding has begin > 0, right padding end < S; both work.
// Forward writes out [B, S, nh, d] and lse f32 [B, nh, S], the natural-log logsumexp of the
// scaled scores of each query (scores = scale * q·k). Rows outside [begin, end) get out = 0
// and lse = 0. No S×S matrix is materialised on the GPU.
// Backward overwrites dq, dk, dv (same shapes as q, k, v; zero outside the ranges) from
// dout, using out and lse from the forward (D_i = rowsum(dout_i * out_i)). Deterministic:
// dk/dv sums over query heads of a group and over query blocks run in a fixed order.
//
// Decode: one new token per sequence. q [B, nh, d]; k_cache, v_cache [B, Smax, nkv, d];
// ranges i32 [B, 2] gives the valid cache rows [begin, end) each query attends to (the new
// token's own k/v already appended at end - 1). out [B, nh, d].
// kv_append: k_new, v_new [B, n, nkv, d] are written to rows [pos[b], pos[b] + n) of the
// caches of each sequence b; pos i32 [B]; rows past Smax are an error on the CPU.
//
// CPU: f32. CUDA: q/k/v/out/dout/dq/dk/dv bf16 (d = 64 or 128), lse f32.
#pragma once

#include "csrc/context.h"

namespace beaver::ops {

void attention_fwd(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& ranges, float scale, const Tensor& out, const Tensor& lse);
void attention_bwd(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& dout, const Tensor& lse,
                   const Tensor& ranges, float scale, const Tensor& dq, const Tensor& dk,
                   const Tensor& dv);
void decode_attention(Context& ctx, const Tensor& q, const Tensor& k_cache,
                      const Tensor& v_cache, const Tensor& ranges, float scale,
                      const Tensor& out);
void kv_append(Context& ctx, const Tensor& k_new, const Tensor& v_new, const Tensor& k_cache,
               const Tensor& v_cache, const Tensor& pos);

namespace cpu {
void attention_fwd(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& ranges, float scale, const Tensor& out, const Tensor& lse);
void attention_bwd(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& dout, const Tensor& lse,
                   const Tensor& ranges, float scale, const Tensor& dq, const Tensor& dk,
                   const Tensor& dv);
void decode_attention(Context& ctx, const Tensor& q, const Tensor& k_cache,
                      const Tensor& v_cache, const Tensor& ranges, float scale,
                      const Tensor& out);
void kv_append(Context& ctx, const Tensor& k_new, const Tensor& v_new,
               const Tensor& k_cache, const Tensor& v_cache, const Tensor& pos);
}  // namespace cpu
namespace cuda {
void attention_fwd(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& ranges, float scale, const Tensor& out, const Tensor& lse);
void attention_bwd(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& dout, const Tensor& lse,
                   const Tensor& ranges, float scale, const Tensor& dq, const Tensor& dk,
                   const Tensor& dv);
void decode_attention(Context& ctx, const Tensor& q, const Tensor& k_cache,
                      const Tensor& v_cache, const Tensor& ranges, float scale,
                      const Tensor& out);
void kv_append(Context& ctx, const Tensor& k_new, const Tensor& v_new,
               const Tensor& k_cache, const Tensor& v_cache, const Tensor& pos);
}  // namespace cuda

}  // namespace beaver::ops
