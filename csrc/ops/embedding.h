// Token embedding lookup and its deterministic backward.
//   fwd: out[t, :] = table[tokens[t], :]        tokens i32 [T], table [V, H], out [T, H]
//   bwd: dtable[v, :] (+)= sum_{t : tokens[t] == v} dout[t, :], summed in increasing t (the
//        CUDA kernel sums a long run in pieces of at most 128 positions, each in increasing t,
//        and adds the pieces in order), so the result is bitwise reproducible (no atomics).
// Token ids must lie in [0, V): the CPU twin throws naming the bad id and its position; the
// CUDA kernel writes zeros for an out-of-range id (ids are validated where data enters).
#pragma once

#include "csrc/context.h"

namespace beaver::ops {

void embedding_fwd(Context& ctx, const Tensor& tokens, const Tensor& table, const Tensor& out);
void embedding_bwd(Context& ctx, const Tensor& tokens, const Tensor& dout, const Tensor& dtable,
                   bool accumulate);

namespace cpu {
void embedding_fwd(Context& ctx, const Tensor& tokens, const Tensor& table, const Tensor& out);
void embedding_bwd(Context& ctx, const Tensor& tokens, const Tensor& dout, const Tensor& dtable,
                   bool accumulate);
}  // namespace cpu
namespace cuda {
void embedding_fwd(Context& ctx, const Tensor& tokens, const Tensor& table, const Tensor& out);
void embedding_bwd(Context& ctx, const Tensor& tokens, const Tensor& dout, const Tensor& dtable,
                   bool accumulate);
}  // namespace cuda

}  // namespace beaver::ops
