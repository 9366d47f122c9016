// Block-wide building blocks of the sampling kernel (kernels/sampling/sample.cu): the block
// shape, the shared-memory layout, logit loads, the order-preserving float key, warp-aggregated
// histogram counts and the index-ordered n-th match. One block of kThreads threads per row;
// every result is independent of scheduling (counts are integer atomics, scans run in a fixed
// order). Sums over the block use detail::block_sum (kernels/common.cuh).
#pragma once

#include <cstdint>

#include "kernels/common.cuh"

namespace beaver::ops::cuda::sampling {

using detail::to_f;

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFull = 0xffffffffu;
static_assert(kWarps == 16, "the top-p pass gives each of the 16 digits one warp");

__device__ __forceinline__ float load_logit(const float* row, int i) { return __ldg(row + i); }
__device__ __forceinline__ float load_logit(const detail::bf16_t* row, int i) { return to_f(row[i]); }

// Order-preserving map float → uint32 (larger float, larger key).
__device__ __forceinline__ uint32_t order_key(float x) {
  const uint32_t u = __float_as_uint(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

struct Shared {
  float red_f[kWarps];
  float red_sum[33];  // detail::block_sum
  int red_i[kWarps];
  unsigned hist[256];
  float bin_mass[16];
  unsigned bin_cnt[16];
  float slots[16][kThreads];  // per-thread mass per 4-bit digit: fixed-order sums
  int result_i[4];
  float result_f[2];
};

// hist[bin] += 1 for every lane with bin >= 0, one atomic per distinct bin in the warp (many
// lanes often share a bin: the leading key bits of similar logits agree). All lanes must call.
template <typename C>
__device__ __forceinline__ void aggregated_add(C* hist, int bin, int lane) {
  const unsigned peers = __match_any_sync(kFull, bin);
  if (bin >= 0 && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], C(__popc(peers)));
}

// Index of the n-th (1-based) i in [0, V), in index order, with pred(i); V when there are fewer.
template <typename Pred>
__device__ int block_nth(int V, int n, Pred pred, Shared& sh) {
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  if (threadIdx.x == 0) sh.result_i[0] = V;
  int seen = 0;
  for (int base = 0; base < V; base += kThreads) {
    const int i = base + int(threadIdx.x);
    const bool f = i < V && pred(i);
    const unsigned ballot = __ballot_sync(kFull, f);
    if (lane == 0) sh.red_i[warp] = __popc(ballot);
    __syncthreads();
    int before = 0, total = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      before += w < warp ? sh.red_i[w] : 0;
      total += sh.red_i[w];
    }
    const int rank = seen + before + __popc(ballot & ((1u << lane) - 1u)) + 1;
    if (f && rank == n) sh.result_i[0] = i;
    seen += total;
    __syncthreads();
    if (seen >= n) break;  // uniform: every thread holds the same count
  }
  __syncthreads();
  const int r = sh.result_i[0];
  __syncthreads();
  return r;
}

}  // namespace beaver::ops::cuda::sampling
