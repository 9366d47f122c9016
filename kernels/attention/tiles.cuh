// CUDA attention: flash forward, deterministic flash backward, split-KV decode, KV append.
//
// Layout (csrc/ops/attention.h): q/out/dq [B, S, nh, d], k/v/dk/dv [B, S, nkv, d] (rows of one
// token are nh*d or nkv*d apart), lse f32 [B, nh, S], ranges i32 [B, 2]. d is 64 or 128; the
// head dimension is a template parameter so that every fragment array is indexed by constants
// (a run-time index would move the arrays to local memory).
//
// Precision: bf16 operands on the tensor cores (mma.sync m16n8k16, fragments loaded with
// ldmatrix from shared tiles whose 16-byte chunks are XOR-swizzled by row, so the 8 rows an
// ldmatrix reads fall in 8 different bank groups), fp32 accumulation, fp32 online softmax in
// base 2 with log2(e) folded into the scale (one FFMA + EX2 per score). P and dS are rounded to
// bf16 before their second matrix product, as in FlashAttention-2. lse is stored in natural log.
//
// Determinism: no atomics. The backward runs three kernels: D = rowsum(dout * out), then one
// kernel per KV block that loops over the query heads of its GQA group and over query blocks in
// a fixed order accumulating dK/dV in registers, then one kernel per query block that loops over
// KV blocks (recomputing P) accumulating dQ. Decode writes per-split partials (m, l, acc) to
// ctx.scratch and a second kernel merges the splits in split order. Every run gives the same bits.
//
// Tiles: K/V (forward, dQ) and Q/dO (dK/dV) stream through two shared-memory buffers filled by
// cp.async, so the next tile's loads overlap this tile's math. Rows past the valid range are
// zero-filled by the copy (padding may hold anything, even NaN, and 0 * NaN would poison P·V).
//
// This header: the swizzled shared-memory tiles and the fragment loads and row stores that the
// forward (forward.cu), backward (backward.cu) and decode (decode.cu) kernels share.
#pragma once

#include "kernels/attention/ptx.cuh"

namespace beaver::ops::cuda::attn {

// ---- Swizzled shared tiles: rows of HD bf16, chunk c of row r stored at chunk c ^ (r & 7) ----
template <int HD>
__device__ __forceinline__ int toff(int row, int chunk) {
  return row * HD + ((chunk ^ (row & 7)) << 3);
}

// Copies ROWS rows of HD elements (global rows `stride` elements apart) into a swizzled tile;
// rows outside [r_lo, r_hi) become zeros. `safe` is any valid global address.
template <int HD, int ROWS, int THREADS>
__device__ __forceinline__ void load_tile(bf16_t* s, const bf16_t* g, int64_t stride, int r_lo,
                                          int r_hi, const bf16_t* safe) {
  constexpr int kChunks = HD / 8;
  static_assert(ROWS * kChunks % THREADS == 0, "tile chunks must split evenly over threads");
#pragma unroll
  for (int i = 0; i < ROWS * kChunks / THREADS; ++i) {
    const int c = int(threadIdx.x) + i * THREADS;
    const int r = c / kChunks, ch = c % kChunks;
    const bool ok = r >= r_lo && r < r_hi;
    cp_async16(s + toff<HD>(r, ch), ok ? g + r * stride + ch * 8 : safe, ok);
  }
}

// A fragment (16×16) of a tile stored [row][k].
template <int HD>
__device__ __forceinline__ void ld_a(const bf16_t* s, int row0, int k0, uint32_t (&a)[4]) {
  const int lane = int(threadIdx.x) & 31;
  ldsm_x4(s + toff<HD>(row0 + (lane & 15), (k0 >> 3) + (lane >> 4)), a);
}
// B fragments of two adjacent n-tiles (n0, n0 + 8) × k 16 from a tile stored [n][k]:
// b[0], b[1] for n-tile n0 and b[2], b[3] for n-tile n0 + 8.
template <int HD>
__device__ __forceinline__ void ld_b_nk(const bf16_t* s, int n0, int k0, uint32_t (&b)[4]) {
  const int lane = int(threadIdx.x) & 31;
  ldsm_x4(s + toff<HD>(n0 + (lane & 7) + ((lane >> 4) << 3), (k0 >> 3) + ((lane >> 3) & 1)), b);
}
// The same from a tile stored [k][n] (transposing load).
template <int HD>
__device__ __forceinline__ void ld_b_kn(const bf16_t* s, int k0, int n0, uint32_t (&b)[4]) {
  const int lane = int(threadIdx.x) & 31;
  ldsm_x4_t(s + toff<HD>(k0 + (lane & 15), (n0 >> 3) + (lane >> 4)), b);
}

// A fragment for k-slice kt from accumulator tiles 2kt and 2kt+1 (their C layout is A's).
template <int N>
__device__ __forceinline__ void acc_to_a(const float (&c)[N][4], int kt, uint32_t (&a)[4]) {
  a[0] = pack_bf16(c[2 * kt][0], c[2 * kt][1]);
  a[1] = pack_bf16(c[2 * kt][2], c[2 * kt][3]);
  a[2] = pack_bf16(c[2 * kt + 1][0], c[2 * kt + 1][1]);
  a[3] = pack_bf16(c[2 * kt + 1][2], c[2 * kt + 1][3]);
}

// acc += p · t for a warp's 16 rows: p the fp32 accumulator tiles of 16 × BN (rounded to bf16
// A fragments), t a shared [BN][HD] tile (transposing loads). The forward's O += P·V and the
// backward's dQ += dS·K.
template <int HD, int BN>
__device__ __forceinline__ void mma_acc_kn(const float (&p)[BN / 8][4], const bf16_t* t,
                                           float (&acc)[HD / 8][4]) {
#pragma unroll
  for (int kt = 0; kt < BN / 16; ++kt) {
    uint32_t a[4];
    acc_to_a(p, kt, a);
#pragma unroll
    for (int dd = 0; dd < HD / 16; ++dd) {
      uint32_t b[4];
      ld_b_kn<HD>(t, kt * 16, dd * 16, b);
      mma(acc[2 * dd], a, b[0], b[1]);
      mma(acc[2 * dd + 1], a, b[2], b[3]);
    }
  }
}

// Writes a warp's 16 accumulator rows (times `mul`, zero for rows whose flag is false) through
// its own rows of a swizzled staging tile, then to global with 16-byte stores.
template <int HD>
__device__ __forceinline__ void store_rows(const float (&o)[HD / 8][4], const float (&mul)[2],
                                           bf16_t* stage, int warp_row0, bf16_t* g,
                                           int64_t stride, int rows_left) {
  const int lane = int(threadIdx.x) & 31;
#pragma unroll
  for (int dt = 0; dt < HD / 8; ++dt)
#pragma unroll
    for (int rh = 0; rh < 2; ++rh) {
      const int r = warp_row0 + (lane >> 2) + 8 * rh;
      *reinterpret_cast<uint32_t*>(stage + toff<HD>(r, dt) + (lane & 3) * 2) =
          pack_bf16(o[dt][2 * rh] * mul[rh], o[dt][2 * rh + 1] * mul[rh]);
    }
  __syncwarp();
  constexpr int kChunks = HD / 8;
#pragma unroll
  for (int c = lane; c < 16 * kChunks; c += 32) {
    const int r = c / kChunks, ch = c % kChunks;
    if (r < rows_left)
      *reinterpret_cast<uint4*>(g + int64_t(r) * stride + ch * 8) =
          *reinterpret_cast<const uint4*>(stage + toff<HD>(warp_row0 + r, ch));
  }
}

template <int HD, int THREADS>
__device__ __forceinline__ void zero_rows(bf16_t* g, int64_t stride, int rows) {
  constexpr int kChunks = HD / 8;
  for (int c = int(threadIdx.x); c < rows * kChunks; c += THREADS)
    *reinterpret_cast<uint4*>(g + int64_t(c / kChunks) * stride + (c % kChunks) * 8) =
        make_uint4(0, 0, 0, 0);
}

__device__ __forceinline__ void row_range(const int* ranges, int b, int S, int& begin, int& end) {
  begin = max(ranges[2 * b], 0);
  end = min(ranges[2 * b + 1], S);
  if (end < begin) end = begin;
}

// Step t of n of the two-buffer pipeline: starts the copies of tile t + 1 into the other buffer
// (load(t + 1, buffer), then one cp.async group), waits until tile t's copies have landed and
// syncs the block. Returns tile t's buffer (t & 1). Tile 0's copies must have been committed
// before step 0; the caller syncs again before the next step's copies overwrite a buffer.
template <typename Load>
__device__ __forceinline__ int pipeline_step(int t, int n, Load& load) {
  const int buf = t & 1;
  if (t + 1 < n) {
    load(t + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
  } else {
    cp_async_wait<0>();
  }
  __syncthreads();
  return buf;
}

}  // namespace beaver::ops::cuda::attn
