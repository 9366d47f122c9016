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
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "csrc/cuda_check.h"
#include "csrc/ops/attention.h"

namespace beaver::ops::cuda {
namespace {

using bf16_t = __nv_bfloat16;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kNegInf = -__builtin_huge_valf();

// ---- PTX wrappers --------------------------------------------------------------------------
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy; src_bytes = 0 writes zeros without reading global memory.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 4 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(const void* p, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_t(const void* p, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// c += a · b for one 16×8 tile (a: 16×16 row-major fragment, b: 16×8 column fragment).
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

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

// ---- Forward -------------------------------------------------------------------------------
struct FwdParams {
  const bf16_t *q, *k, *v;
  bf16_t* out;
  float* lse;
  const int* ranges;
  int S, nh, nkv, group;
  float scale_log2;
};

// One block = BM = 16·WARPS query rows of one head; warp w owns rows 16w..16w+15. Key tiles of
// BN rows run from the row's begin up to the block's last valid query.
template <int HD, int WARPS, int BN>
__global__ void __launch_bounds__(WARPS * 32) attn_fwd_kernel(const FwdParams p) {
  constexpr int BM = WARPS * 16, THREADS = WARPS * 32;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16_t* sQ = reinterpret_cast<bf16_t*>(smem);
  bf16_t* sK = sQ + BM * HD;      // two buffers
  bf16_t* sV = sK + 2 * BN * HD;  // two buffers

  const int qb = int(gridDim.x) - 1 - int(blockIdx.x);  // longest (latest) blocks start first
  const int h = int(blockIdx.y), b = int(blockIdx.z), hk = h / p.group;
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  int begin, end;
  row_range(p.ranges, b, p.S, begin, end);
  const int m0 = qb * BM, rows = min(BM, p.S - m0);
  const int lo = max(m0, begin), hi = min(m0 + BM, end);
  const int64_t qstride = int64_t(p.nh) * HD, kstride = int64_t(p.nkv) * HD;
  const bf16_t* qg = p.q + (int64_t(b) * p.S + m0) * qstride + int64_t(h) * HD;
  bf16_t* og = p.out + (int64_t(b) * p.S + m0) * qstride + int64_t(h) * HD;
  float* lseg = p.lse + (int64_t(b) * p.nh + h) * p.S + m0;
  if (lo >= hi) {  // no valid query here: zeros
    zero_rows<HD, THREADS>(og, qstride, rows);
    for (int r = int(threadIdx.x); r < rows; r += THREADS) lseg[r] = 0.0f;
    return;
  }
  const bf16_t* kg = p.k + int64_t(b) * p.S * kstride + int64_t(hk) * HD;
  const bf16_t* vg = p.v + int64_t(b) * p.S * kstride + int64_t(hk) * HD;
  const int n_tiles = (hi - begin + BN - 1) / BN;

  auto load_kv = [&](int t, int buf) {
    const int n0 = begin + t * BN;
    load_tile<HD, BN, THREADS>(sK + buf * BN * HD, kg + n0 * kstride, kstride, 0, hi - n0, p.k);
    load_tile<HD, BN, THREADS>(sV + buf * BN * HD, vg + n0 * kstride, kstride, 0, hi - n0, p.v);
  };
  load_tile<HD, BM, THREADS>(sQ, qg, qstride, lo - m0, hi - m0, p.q);
  load_kv(0, 0);
  cp_async_commit();

  const int row_a = m0 + warp * 16 + (lane >> 2);  // this thread's rows: row_a, row_a + 8
  uint32_t qf[HD / 16][4];
  float o[HD / 8][4];
#pragma unroll
  for (int i = 0; i < HD / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m_r[2] = {kNegInf, kNegInf}, l_r[2] = {0.0f, 0.0f};

  for (int t = 0; t < n_tiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < n_tiles) {
      load_kv(t + 1, buf ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (t == 0) {
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) ld_a<HD>(sQ, warp * 16, kk * 16, qf[kk]);
    }
    const bf16_t* k_s = sK + buf * BN * HD;
    const bf16_t* v_s = sV + buf * BN * HD;

    float s[BN / 8][4];
#pragma unroll
    for (int i = 0; i < BN / 8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk)
#pragma unroll
      for (int nn = 0; nn < BN / 16; ++nn) {
        uint32_t bk[4];
        ld_b_nk<HD>(k_s, nn * 16, kk * 16, bk);
        mma(s[2 * nn], qf[kk], bk[0], bk[1]);
        mma(s[2 * nn + 1], qf[kk], bk[2], bk[3]);
      }

    const int n0 = begin + t * BN;
    const bool need_mask = n0 + BN - 1 > m0 + warp * 16;  // some key after some row of this warp
#pragma unroll
    for (int nt = 0; nt < BN / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[nt][e] * p.scale_log2;
        if (need_mask) {
          const int j = n0 + nt * 8 + (lane & 3) * 2 + (e & 1);
          const int i = row_a + 8 * (e >> 1);
          if (j > i) x = kNegInf;
        }
        s[nt][e] = x;
      }

#pragma unroll
    for (int rh = 0; rh < 2; ++rh) {
      float mx = kNegInf;
#pragma unroll
      for (int nt = 0; nt < BN / 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * rh], s[nt][2 * rh + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m_r[rh], mx);
      const float m_use = m_new == kNegInf ? 0.0f : m_new;  // a fully masked row stays at zero
      const float alpha = ex2(m_r[rh] - m_use);
      m_r[rh] = m_new;
      float sum = 0.0f;
#pragma unroll
      for (int nt = 0; nt < BN / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float pv = ex2(s[nt][2 * rh + e] - m_use);
          s[nt][2 * rh + e] = pv;
          sum += pv;
        }
      l_r[rh] = l_r[rh] * alpha + sum;  // per-thread partial, summed over the quad at the end
#pragma unroll
      for (int dt = 0; dt < HD / 8; ++dt) {
        o[dt][2 * rh] *= alpha;
        o[dt][2 * rh + 1] *= alpha;
      }
    }

#pragma unroll
    for (int kt = 0; kt < BN / 16; ++kt) {
      uint32_t a[4];
      acc_to_a(s, kt, a);
#pragma unroll
      for (int dd = 0; dd < HD / 16; ++dd) {
        uint32_t bv[4];
        ld_b_kn<HD>(v_s, kt * 16, dd * 16, bv);
        mma(o[2 * dd], a, bv[0], bv[1]);
        mma(o[2 * dd + 1], a, bv[2], bv[3]);
      }
    }
    __syncthreads();  // the next iteration's copies overwrite this buffer
  }

  float mul[2];
#pragma unroll
  for (int rh = 0; rh < 2; ++rh) {
    float l = l_r[rh];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int i = row_a + 8 * rh;
    const bool valid = i >= lo && i < hi && l > 0.0f;
    mul[rh] = valid ? 1.0f / l : 0.0f;
    if ((lane & 3) == 0 && i < p.S) lseg[i - m0] = valid ? (m_r[rh] + __log2f(l)) * kLn2 : 0.0f;
  }
  store_rows<HD>(o, mul, sQ, warp * 16, og + int64_t(warp) * 16 * qstride, qstride,
                 rows - warp * 16);
}

// ---- Backward ------------------------------------------------------------------------------
struct BwdParams {
  const bf16_t *q, *k, *v, *out, *dout;
  const float* lse;
  float* delta;  // D = rowsum(dout * out) [B, nh, S]
  bf16_t *dq, *dk, *dv;
  const int* ranges;
  int S, nh, nkv, group;
  float scale, scale_log2;
};

// D[b, h, i] = sum_d dout·out in fp32 (zero outside the range). One warp per (b, i, h).
template <int HD>
__global__ void __launch_bounds__(256) attn_bwd_delta_kernel(const BwdParams p, int64_t n_rows) {
  const int64_t row = int64_t(blockIdx.x) * 8 + (threadIdx.x >> 5);
  if (row >= n_rows) return;
  const int lane = int(threadIdx.x) & 31;
  const int h = int(row % p.nh);
  const int64_t bi = row / p.nh;
  const int i = int(bi % p.S), b = int(bi / p.S);
  int begin, end;
  row_range(p.ranges, b, p.S, begin, end);
  float acc = 0.0f;
  if (i >= begin && i < end) {
    constexpr int kPer = HD / 32;  // 2 or 4 elements per lane
    const bf16_t* o = p.out + row * HD + lane * kPer;
    const bf16_t* d = p.dout + row * HD + lane * kPer;
#pragma unroll
    for (int e = 0; e < kPer; e += 2) {
      const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(o + e));
      const float2 c = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(d + e));
      acc += a.x * c.x + a.y * c.y;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  }
  if (lane == 0) p.delta[(int64_t(b) * p.nh + h) * p.S + i] = acc;
}

// dK, dV for BN = 16·WARPS keys of one KV head; warp w owns keys 16w..16w+15. Loops over the
// group's query heads, then over query tiles of BM rows, all in a fixed order. Works in the
// transposed frame (keys are the M dimension): S^T = K Q^T, dV += P^T dO, dP^T = V dO^T,
// dK += dS^T Q.
template <int HD, int WARPS, int BM>
__global__ void __launch_bounds__(WARPS * 32) attn_bwd_dkdv_kernel(const BwdParams p) {
  constexpr int BN = WARPS * 16, THREADS = WARPS * 32;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16_t* sK = reinterpret_cast<bf16_t*>(smem);
  bf16_t* sV = sK + BN * HD;
  bf16_t* sQ = sV + BN * HD;       // two buffers
  bf16_t* sdO = sQ + 2 * BM * HD;  // two buffers
  float* sL = reinterpret_cast<float*>(sdO + 2 * BM * HD);  // lse, two buffers
  float* sD = sL + 2 * BM;                                   // two buffers

  const int nb = int(blockIdx.x), hk = int(blockIdx.y), b = int(blockIdx.z);
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  int begin, end;
  row_range(p.ranges, b, p.S, begin, end);
  const int n0 = nb * BN, keys = min(BN, p.S - n0);
  const int klo = max(n0, begin), khi = min(n0 + BN, end);
  const int64_t qstride = int64_t(p.nh) * HD, kstride = int64_t(p.nkv) * HD;
  const int64_t kbase = (int64_t(b) * p.S + n0) * kstride + int64_t(hk) * HD;
  if (klo >= khi) {
    zero_rows<HD, THREADS>(p.dk + kbase, kstride, keys);
    zero_rows<HD, THREADS>(p.dv + kbase, kstride, keys);
    return;
  }
  const int nq = (end - klo + BM - 1) / BM;  // query tiles start at the first valid key
  const int n_iter = nq * p.group;

  auto load_q = [&](int it, int buf) {
    const int h = hk * p.group + it / nq, i0 = klo + (it % nq) * BM;
    const int64_t off = (int64_t(b) * p.S + i0) * qstride + int64_t(h) * HD;
    load_tile<HD, BM, THREADS>(sQ + buf * BM * HD, p.q + off, qstride, 0, end - i0, p.q);
    load_tile<HD, BM, THREADS>(sdO + buf * BM * HD, p.dout + off, qstride, 0, end - i0, p.dout);
    const int64_t loff = (int64_t(b) * p.nh + h) * p.S + i0;
    for (int r = int(threadIdx.x); r < BM; r += THREADS) {
      const bool ok = i0 + r < end;
      cp_async4(sL + buf * BM + r, ok ? p.lse + loff + r : p.lse, ok);
      cp_async4(sD + buf * BM + r, ok ? p.delta + loff + r : p.delta, ok);
    }
  };
  load_tile<HD, BN, THREADS>(sK, p.k + kbase, kstride, klo - n0, khi - n0, p.k);
  load_tile<HD, BN, THREADS>(sV, p.v + kbase, kstride, klo - n0, khi - n0, p.v);
  load_q(0, 0);
  cp_async_commit();

  float dk[HD / 8][4], dv[HD / 8][4];
#pragma unroll
  for (int i = 0; i < HD / 8; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[i][e] = dv[i][e] = 0.0f;
  const int key_a = n0 + warp * 16 + (lane >> 2);  // this thread's keys: key_a, key_a + 8

  for (int it = 0; it < n_iter; ++it) {
    const int buf = it & 1;
    if (it + 1 < n_iter) {
      load_q(it + 1, buf ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const bf16_t* q_s = sQ + buf * BM * HD;
    const bf16_t* do_s = sdO + buf * BM * HD;
    const float* l_s = sL + buf * BM;
    const float* d_s = sD + buf * BM;
    const int i0 = klo + (it % nq) * BM;

    float st[BM / 8][4], dpt[BM / 8][4];
#pragma unroll
    for (int i = 0; i < BM / 8; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) st[i][e] = dpt[i][e] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      uint32_t ka[4], va[4];
      ld_a<HD>(sK, warp * 16, kk * 16, ka);
      ld_a<HD>(sV, warp * 16, kk * 16, va);
#pragma unroll
      for (int nn = 0; nn < BM / 16; ++nn) {
        uint32_t bq[4], bo[4];
        ld_b_nk<HD>(q_s, nn * 16, kk * 16, bq);
        mma(st[2 * nn], ka, bq[0], bq[1]);
        mma(st[2 * nn + 1], ka, bq[2], bq[3]);
        ld_b_nk<HD>(do_s, nn * 16, kk * 16, bo);
        mma(dpt[2 * nn], va, bo[0], bo[1]);
        mma(dpt[2 * nn + 1], va, bo[2], bo[3]);
      }
    }

    // P^T = exp2(S^T·scale·log2e − lse_i·log2e); dS^T = P^T ⊙ (dP^T − D_i).
    const bool need_mask = !(i0 >= n0 + BN - 1 && i0 + BM <= end && n0 >= begin);
#pragma unroll
    for (int nt = 0; nt < BM / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = nt * 8 + (lane & 3) * 2 + (e & 1);
        float pv = ex2(st[nt][e] * p.scale_log2 - l_s[c] * kLog2e);
        if (need_mask) {
          const int i = i0 + c, j = key_a + 8 * (e >> 1);
          if (!(j >= begin && j <= i && i < end)) pv = 0.0f;
        }
        st[nt][e] = pv;
        dpt[nt][e] = pv * (dpt[nt][e] - d_s[c]);
      }

#pragma unroll
    for (int kt = 0; kt < BM / 16; ++kt) {
      uint32_t ap[4], ads[4];
      acc_to_a(st, kt, ap);
      acc_to_a(dpt, kt, ads);
#pragma unroll
      for (int dd = 0; dd < HD / 16; ++dd) {
        uint32_t bo[4], bq[4];
        ld_b_kn<HD>(do_s, kt * 16, dd * 16, bo);
        mma(dv[2 * dd], ap, bo[0], bo[1]);
        mma(dv[2 * dd + 1], ap, bo[2], bo[3]);
        ld_b_kn<HD>(q_s, kt * 16, dd * 16, bq);
        mma(dk[2 * dd], ads, bq[0], bq[1]);
        mma(dk[2 * dd + 1], ads, bq[2], bq[3]);
      }
    }
    __syncthreads();
  }

  // Staging reuses the K and V tiles (each warp writes only its own 16 rows of each).
  const float mul_k[2] = {p.scale, p.scale}, mul_v[2] = {1.0f, 1.0f};
  store_rows<HD>(dk, mul_k, sK, warp * 16, p.dk + kbase + int64_t(warp) * 16 * kstride, kstride,
                 keys - warp * 16);
  store_rows<HD>(dv, mul_v, sV, warp * 16, p.dv + kbase + int64_t(warp) * 16 * kstride, kstride,
                 keys - warp * 16);
}

// dQ for BM = 16·WARPS query rows of one head, looping over key tiles like the forward:
// S = Q K^T, P from lse, dP = dO V^T, dS = P ⊙ (dP − D), dQ += dS K.
template <int HD, int WARPS, int BN>
__global__ void __launch_bounds__(WARPS * 32) attn_bwd_dq_kernel(const BwdParams p) {
  constexpr int BM = WARPS * 16, THREADS = WARPS * 32;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16_t* sQ = reinterpret_cast<bf16_t*>(smem);
  bf16_t* sdO = sQ + BM * HD;
  bf16_t* sK = sdO + BM * HD;     // two buffers
  bf16_t* sV = sK + 2 * BN * HD;  // two buffers

  const int qb = int(gridDim.x) - 1 - int(blockIdx.x);
  const int h = int(blockIdx.y), b = int(blockIdx.z), hk = h / p.group;
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  int begin, end;
  row_range(p.ranges, b, p.S, begin, end);
  const int m0 = qb * BM, rows = min(BM, p.S - m0);
  const int lo = max(m0, begin), hi = min(m0 + BM, end);
  const int64_t qstride = int64_t(p.nh) * HD, kstride = int64_t(p.nkv) * HD;
  const int64_t qoff = (int64_t(b) * p.S + m0) * qstride + int64_t(h) * HD;
  if (lo >= hi) {
    zero_rows<HD, THREADS>(p.dq + qoff, qstride, rows);
    return;
  }
  const bf16_t* kg = p.k + int64_t(b) * p.S * kstride + int64_t(hk) * HD;
  const bf16_t* vg = p.v + int64_t(b) * p.S * kstride + int64_t(hk) * HD;
  const int n_tiles = (hi - begin + BN - 1) / BN;
  auto load_kv = [&](int t, int buf) {
    const int n0 = begin + t * BN;
    load_tile<HD, BN, THREADS>(sK + buf * BN * HD, kg + n0 * kstride, kstride, 0, hi - n0, p.k);
    load_tile<HD, BN, THREADS>(sV + buf * BN * HD, vg + n0 * kstride, kstride, 0, hi - n0, p.v);
  };
  load_tile<HD, BM, THREADS>(sQ, p.q + qoff, qstride, lo - m0, hi - m0, p.q);
  load_tile<HD, BM, THREADS>(sdO, p.dout + qoff, qstride, lo - m0, hi - m0, p.dout);
  load_kv(0, 0);
  cp_async_commit();

  const int row_a = m0 + warp * 16 + (lane >> 2);
  bool row_ok[2];
  float lse2[2], dlt[2];
#pragma unroll
  for (int rh = 0; rh < 2; ++rh) {
    const int i = row_a + 8 * rh;
    row_ok[rh] = i >= lo && i < hi;
    const int64_t li = (int64_t(b) * p.nh + h) * p.S + i;
    lse2[rh] = row_ok[rh] ? p.lse[li] * kLog2e : 0.0f;
    dlt[rh] = row_ok[rh] ? p.delta[li] : 0.0f;
  }
  float dq[HD / 8][4];
#pragma unroll
  for (int i = 0; i < HD / 8; ++i) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.0f;
  const bool rows_partial = lo > m0 + warp * 16 || hi < m0 + warp * 16 + 16;

  for (int t = 0; t < n_tiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < n_tiles) {
      load_kv(t + 1, buf ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const bf16_t* k_s = sK + buf * BN * HD;
    const bf16_t* v_s = sV + buf * BN * HD;

    float s[BN / 8][4], dp[BN / 8][4];
#pragma unroll
    for (int i = 0; i < BN / 8; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[i][e] = dp[i][e] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      uint32_t qa[4], oa[4];
      ld_a<HD>(sQ, warp * 16, kk * 16, qa);
      ld_a<HD>(sdO, warp * 16, kk * 16, oa);
#pragma unroll
      for (int nn = 0; nn < BN / 16; ++nn) {
        uint32_t bk[4], bv[4];
        ld_b_nk<HD>(k_s, nn * 16, kk * 16, bk);
        mma(s[2 * nn], qa, bk[0], bk[1]);
        mma(s[2 * nn + 1], qa, bk[2], bk[3]);
        ld_b_nk<HD>(v_s, nn * 16, kk * 16, bv);
        mma(dp[2 * nn], oa, bv[0], bv[1]);
        mma(dp[2 * nn + 1], oa, bv[2], bv[3]);
      }
    }
    const int n0 = begin + t * BN;
    const bool need_mask = rows_partial || n0 + BN - 1 > m0 + warp * 16;
#pragma unroll
    for (int nt = 0; nt < BN / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int rh = e >> 1;
        float pv = ex2(s[nt][e] * p.scale_log2 - lse2[rh]);
        if (need_mask) {
          const int j = n0 + nt * 8 + (lane & 3) * 2 + (e & 1);
          if (!row_ok[rh] || j > row_a + 8 * rh) pv = 0.0f;
        }
        s[nt][e] = pv * (dp[nt][e] - dlt[rh]);  // dS
      }
#pragma unroll
    for (int kt = 0; kt < BN / 16; ++kt) {
      uint32_t a[4];
      acc_to_a(s, kt, a);
#pragma unroll
      for (int dd = 0; dd < HD / 16; ++dd) {
        uint32_t bk[4];
        ld_b_kn<HD>(k_s, kt * 16, dd * 16, bk);
        mma(dq[2 * dd], a, bk[0], bk[1]);
        mma(dq[2 * dd + 1], a, bk[2], bk[3]);
      }
    }
    __syncthreads();
  }
  const float mul[2] = {row_ok[0] ? p.scale : 0.0f, row_ok[1] ? p.scale : 0.0f};
  store_rows<HD>(dq, mul, sQ, warp * 16, p.dq + qoff + int64_t(warp) * 16 * qstride, qstride,
                 rows - warp * 16);
}

// ---- Decode --------------------------------------------------------------------------------
struct DecParams {
  const bf16_t *q, *kc, *vc;
  bf16_t* out;
  const int* ranges;
  float* part_acc;  // [B, nh, n_split, HD]
  float* part_ml;   // [B, nh, n_split, 2]
  int Smax, nh, nkv, group, n_chunks, n_split;
  float scale_log2;
};

constexpr int kDecWarps = 4;
constexpr int kDecUnroll = 4;

// One block = one split of one sequence's cache for GH query heads sharing a KV head, so each
// K/V row is read once for the whole group. HD/8 lanes hold one key row (16 bytes each); a
// warp covers 32·8/HD keys per step and keeps kDecUnroll steps of loads in flight.
template <int HD, int GH>
__global__ void __launch_bounds__(kDecWarps * 32) decode_split_kernel(const DecParams p) {
  constexpr int LPK = HD / 8, KPW = 32 / LPK, STEP = kDecWarps * KPW;
  __shared__ float s_m[kDecWarps][GH], s_l[kDecWarps][GH];
  __shared__ float s_acc[kDecWarps][GH][HD];

  const int split = int(blockIdx.x), hk = int(blockIdx.y) / p.n_chunks;
  const int chunk = int(blockIdx.y) % p.n_chunks, b = int(blockIdx.z);
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int grp = lane / LPK, sub = lane % LPK;
  int begin, end;
  row_range(p.ranges, b, p.Smax, begin, end);
  const int per = (end - begin + p.n_split - 1) / p.n_split;
  const int s0 = begin + split * per, s1 = min(end, s0 + per);
  const int h0 = hk * p.group + chunk * GH;

  float qv[GH][8], acc[GH][8], m[GH], l[GH];
#pragma unroll
  for (int g = 0; g < GH; ++g) {
    const uint4 raw =
        *reinterpret_cast<const uint4*>(p.q + (int64_t(b) * p.nh + h0 + g) * HD + sub * 8);
    const __nv_bfloat162* h2 = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float2 f = __bfloat1622float2(h2[e]);
      qv[g][2 * e] = f.x * p.scale_log2;
      qv[g][2 * e + 1] = f.y * p.scale_log2;
    }
    m[g] = kNegInf;
    l[g] = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[g][e] = 0.0f;
  }
  const int64_t kstride = int64_t(p.nkv) * HD;
  const bf16_t* kg = p.kc + int64_t(b) * p.Smax * kstride + int64_t(hk) * HD + sub * 8;
  const bf16_t* vg = p.vc + int64_t(b) * p.Smax * kstride + int64_t(hk) * HD + sub * 8;

  // The loop bound is uniform per warp (the shuffles below need every lane).
  for (int wbase = s0 + warp * KPW; wbase < s1; wbase += kDecUnroll * STEP) {
    const int base = wbase + grp;
    uint4 kr[kDecUnroll], vr[kDecUnroll];
#pragma unroll
    for (int u = 0; u < kDecUnroll; ++u) {
      const int j = base + u * STEP;
      if (j < s1) {
        kr[u] = __ldg(reinterpret_cast<const uint4*>(kg + j * kstride));
        vr[u] = __ldg(reinterpret_cast<const uint4*>(vg + j * kstride));
      } else {
        kr[u] = vr[u] = make_uint4(0, 0, 0, 0);
      }
    }
    float sc[kDecUnroll][GH];
#pragma unroll
    for (int u = 0; u < kDecUnroll; ++u) {
      float kf[8];
      const __nv_bfloat162* k2 = reinterpret_cast<const __nv_bfloat162*>(&kr[u]);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 f = __bfloat1622float2(k2[e]);
        kf[2 * e] = f.x;
        kf[2 * e + 1] = f.y;
      }
#pragma unroll
      for (int g = 0; g < GH; ++g) {
        float d = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) d += qv[g][e] * kf[e];
#pragma unroll
        for (int off = LPK / 2; off > 0; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
        sc[u][g] = base + u * STEP < s1 ? d : kNegInf;
      }
    }
#pragma unroll
    for (int g = 0; g < GH; ++g) {
      float mx = m[g];
#pragma unroll
      for (int u = 0; u < kDecUnroll; ++u) mx = fmaxf(mx, sc[u][g]);
      const float m_use = mx == kNegInf ? 0.0f : mx;
      const float corr = ex2(m[g] - m_use);
      m[g] = mx;
      l[g] *= corr;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[g][e] *= corr;
#pragma unroll
      for (int u = 0; u < kDecUnroll; ++u) {
        const float pv = ex2(sc[u][g] - m_use);
        l[g] += pv;
        const __nv_bfloat162* v2 = reinterpret_cast<const __nv_bfloat162*>(&vr[u]);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 f = __bfloat1622float2(v2[e]);
          acc[g][2 * e] += pv * f.x;
          acc[g][2 * e + 1] += pv * f.y;
        }
      }
    }
  }

  // Merge the key groups of this warp (fixed butterfly), then the warps (fixed order).
#pragma unroll
  for (int off = LPK; off < 32; off <<= 1)
#pragma unroll
    for (int g = 0; g < GH; ++g) {
      const float m_o = __shfl_xor_sync(0xffffffffu, m[g], off);
      const float l_o = __shfl_xor_sync(0xffffffffu, l[g], off);
      const float mx = fmaxf(m[g], m_o);
      const float m_use = mx == kNegInf ? 0.0f : mx;
      const float c_s = ex2(m[g] - m_use), c_o = ex2(m_o - m_use);
      l[g] = l[g] * c_s + l_o * c_o;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float a_o = __shfl_xor_sync(0xffffffffu, acc[g][e], off);
        acc[g][e] = acc[g][e] * c_s + a_o * c_o;
      }
      m[g] = mx;
    }
  if (grp == 0) {
#pragma unroll
    for (int g = 0; g < GH; ++g) {
#pragma unroll
      for (int e = 0; e < 8; ++e) s_acc[warp][g][sub * 8 + e] = acc[g][e];
      if (sub == 0) {
        s_m[warp][g] = m[g];
        s_l[warp][g] = l[g];
      }
    }
  }
  __syncthreads();
  for (int idx = int(threadIdx.x); idx < GH * HD; idx += kDecWarps * 32) {
    const int g = idx / HD, d = idx % HD;
    float mx = kNegInf;
#pragma unroll
    for (int w = 0; w < kDecWarps; ++w) mx = fmaxf(mx, s_m[w][g]);
    const float m_use = mx == kNegInf ? 0.0f : mx;
    float a = 0.0f, lsum = 0.0f;
#pragma unroll
    for (int w = 0; w < kDecWarps; ++w) {
      const float c = ex2(s_m[w][g] - m_use);
      a += s_acc[w][g][d] * c;
      lsum += s_l[w][g] * c;
    }
    const int64_t slot = (int64_t(b) * p.nh + h0 + g) * p.n_split + split;
    p.part_acc[slot * HD + d] = a;
    if (d == 0) {
      p.part_ml[2 * slot] = mx;
      p.part_ml[2 * slot + 1] = lsum;
    }
  }
}

// Merges the splits of one (b, h) in split order and normalises: out = Σ acc_s c_s / Σ l_s c_s.
template <int HD>
__global__ void __launch_bounds__(HD) decode_reduce_kernel(const DecParams p) {
  const int h = int(blockIdx.x), b = int(blockIdx.y), d = int(threadIdx.x);
  const int64_t slot0 = (int64_t(b) * p.nh + h) * p.n_split;
  float mx = kNegInf;
  for (int s = 0; s < p.n_split; ++s) mx = fmaxf(mx, p.part_ml[2 * (slot0 + s)]);
  const float m_use = mx == kNegInf ? 0.0f : mx;
  float a = 0.0f, l = 0.0f;
  for (int s = 0; s < p.n_split; ++s) {
    const float c = ex2(p.part_ml[2 * (slot0 + s)] - m_use);
    a += p.part_acc[(slot0 + s) * HD + d] * c;
    l += p.part_ml[2 * (slot0 + s) + 1] * c;
  }
  p.out[(int64_t(b) * p.nh + h) * HD + d] = __float2bfloat16(l > 0.0f ? a / l : 0.0f);
}

// ---- KV append -----------------------------------------------------------------------------
// Per sequence the n new rows and their destination rows are both contiguous, so this is one
// vectorised copy per (sequence, k|v); rows that would land outside [0, Smax) are skipped.
template <typename V>
__global__ void kv_append_kernel(const V* k_new, const V* v_new, V* k_cache, V* v_cache,
                                 const int* pos, int n, int Smax, int64_t row_vecs) {
  const int b = int(blockIdx.y);
  const V* src = (blockIdx.z == 0 ? k_new : v_new) + int64_t(b) * n * row_vecs;
  const int p0 = pos[b];
  V* dst = (blockIdx.z == 0 ? k_cache : v_cache) + (int64_t(b) * Smax + p0) * row_vecs;
  const int64_t total = int64_t(n) * row_vecs;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = p0 + i / row_vecs;
    if (r >= 0 && r < Smax) dst[i] = src[i];
  }
}

// ---- Host side -----------------------------------------------------------------------------
// bf16, and 16-byte aligned: the kernels move rows with 16-byte copies.
void expect_bf16(std::initializer_list<std::pair<const Tensor*, const char*>> ts, const char* op) {
  for (const auto& [t, name] : ts) {
    expect_dtype(*t, DType::BF16, op, name);
    BEAVER_CHECK(reinterpret_cast<uintptr_t>(t->data) % 16 == 0, op, ": ", name,
                 " must start on a 16-byte boundary for the CUDA backend");
  }
}

cudaStream_t stream_of(Context& ctx) { return static_cast<cudaStream_t>(ctx.stream()); }

const bf16_t* cbf(const Tensor& t) { return reinterpret_cast<const bf16_t*>(t.data); }
bf16_t* mbf(const Tensor& t) { return reinterpret_cast<bf16_t*>(t.data); }

int head_dim_of(const Tensor& t, const char* op) {
  const int64_t d = t.size(-1);
  if (d != 64 && d != 128)
    BEAVER_FAIL(op, ": head dim ", d, " is not supported by the CUDA backend (64 or 128)");
  return int(d);
}

template <typename Kernel>
void set_smem(Kernel kernel, size_t bytes) {
  BEAVER_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         int(bytes)));
}

constexpr int kFwdWarps = 4, kFwdBN = 64;
constexpr int kDqWarps = 4, kDqBN = 64;
constexpr int kDkvWarps = 4;
template <int HD>
constexpr int dkdv_bm() {
  return HD == 128 ? 32 : 64;  // keeps dK, dV, S^T and dP^T in registers without spilling
}

template <int HD>
void launch_fwd(const FwdParams& p, int B, cudaStream_t st) {
  constexpr int BM = kFwdWarps * 16;
  const size_t smem = size_t(BM + 4 * kFwdBN) * HD * sizeof(bf16_t);
  auto kernel = attn_fwd_kernel<HD, kFwdWarps, kFwdBN>;
  set_smem(kernel, smem);
  const dim3 grid(unsigned((p.S + BM - 1) / BM), unsigned(p.nh), unsigned(B));
  kernel<<<grid, kFwdWarps * 32, smem, st>>>(p);
  BEAVER_CUDA_LAUNCH_CHECK();
}

template <int HD>
void launch_bwd(const BwdParams& p, int B, cudaStream_t st) {
  const int64_t n_rows = int64_t(B) * p.S * p.nh;
  attn_bwd_delta_kernel<HD><<<unsigned((n_rows + 7) / 8), 256, 0, st>>>(p, n_rows);
  BEAVER_CUDA_LAUNCH_CHECK();

  constexpr int BN = kDkvWarps * 16, BMq = dkdv_bm<HD>();
  const size_t smem_kv = size_t(2 * BN + 4 * BMq) * HD * sizeof(bf16_t) + 4 * BMq * sizeof(float);
  auto kv_kernel = attn_bwd_dkdv_kernel<HD, kDkvWarps, BMq>;
  set_smem(kv_kernel, smem_kv);
  const dim3 grid_kv(unsigned((p.S + BN - 1) / BN), unsigned(p.nkv), unsigned(B));
  kv_kernel<<<grid_kv, kDkvWarps * 32, smem_kv, st>>>(p);
  BEAVER_CUDA_LAUNCH_CHECK();

  constexpr int BM = kDqWarps * 16;
  const size_t smem_q = size_t(2 * BM + 4 * kDqBN) * HD * sizeof(bf16_t);
  auto q_kernel = attn_bwd_dq_kernel<HD, kDqWarps, kDqBN>;
  set_smem(q_kernel, smem_q);
  const dim3 grid_q(unsigned((p.S + BM - 1) / BM), unsigned(p.nh), unsigned(B));
  q_kernel<<<grid_q, kDqWarps * 32, smem_q, st>>>(p);
  BEAVER_CUDA_LAUNCH_CHECK();
}

template <int HD, int GH>
void launch_decode(const DecParams& p, int B, cudaStream_t st) {
  const dim3 grid(unsigned(p.n_split), unsigned(p.nkv * p.n_chunks), unsigned(B));
  decode_split_kernel<HD, GH><<<grid, kDecWarps * 32, 0, st>>>(p);
  BEAVER_CUDA_LAUNCH_CHECK();
  decode_reduce_kernel<HD><<<dim3(unsigned(p.nh), unsigned(B)), HD, 0, st>>>(p);
  BEAVER_CUDA_LAUNCH_CHECK();
}

}  // namespace

void attention_fwd(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& ranges, float scale, const Tensor& out, const Tensor& lse) {
  constexpr const char* op = "attention_fwd";
  expect_bf16({{&q, "q"}, {&k, "k"}, {&v, "v"}, {&out, "out"}}, op);
  expect_dtype(lse, DType::F32, op, "lse");
  expect_dtype(ranges, DType::I32, op, "ranges");
  const int d = head_dim_of(q, op);
  FwdParams p{cbf(q), cbf(k), cbf(v), mbf(out), lse.ptr<float>(), ranges.ptr<int32_t>(),
              int(q.size(1)), int(q.size(2)), int(k.size(2)), 0, scale * kLog2e};
  BEAVER_CHECK(p.nkv > 0 && p.nh % p.nkv == 0, op, ": nh ", p.nh, " is not a multiple of nkv ",
               p.nkv);
  p.group = p.nh / p.nkv;
  const int B = int(q.size(0));
  if (B == 0 || p.S == 0 || p.nh == 0) return;
  if (d == 64)
    launch_fwd<64>(p, B, stream_of(ctx));
  else
    launch_fwd<128>(p, B, stream_of(ctx));
}

void attention_bwd(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& dout, const Tensor& lse,
                   const Tensor& ranges, float scale, const Tensor& dq, const Tensor& dk,
                   const Tensor& dv) {
  constexpr const char* op = "attention_bwd";
  expect_bf16({{&q, "q"}, {&k, "k"}, {&v, "v"}, {&out, "out"}, {&dout, "dout"}, {&dq, "dq"},
               {&dk, "dk"}, {&dv, "dv"}},
              op);
  expect_dtype(lse, DType::F32, op, "lse");
  expect_dtype(ranges, DType::I32, op, "ranges");
  const int d = head_dim_of(q, op);
  const int B = int(q.size(0)), S = int(q.size(1)), nh = int(q.size(2)), nkv = int(k.size(2));
  BEAVER_CHECK(nkv > 0 && nh % nkv == 0, op, ": nh ", nh, " is not a multiple of nkv ", nkv);
  if (B == 0 || S == 0 || nh == 0) return;
  float* delta = static_cast<float*>(ctx.scratch(size_t(B) * nh * S * sizeof(float)));
  const BwdParams p{cbf(q),   cbf(k),   cbf(v),   cbf(out), cbf(dout), lse.ptr<float>(),
                    delta,    mbf(dq),  mbf(dk),  mbf(dv),  ranges.ptr<int32_t>(),
                    S,        nh,       nkv,      nh / nkv, scale,     scale * kLog2e};
  if (d == 64)
    launch_bwd<64>(p, B, stream_of(ctx));
  else
    launch_bwd<128>(p, B, stream_of(ctx));
}

void decode_attention(Context& ctx, const Tensor& q, const Tensor& k_cache,
                      const Tensor& v_cache, const Tensor& ranges, float scale,
                      const Tensor& out) {
  constexpr const char* op = "decode_attention";
  expect_bf16({{&q, "q"}, {&k_cache, "k_cache"}, {&v_cache, "v_cache"}, {&out, "out"}}, op);
  expect_dtype(ranges, DType::I32, op, "ranges");
  const int d = head_dim_of(q, op);
  const int B = int(q.size(0)), nh = int(q.size(1));
  const int Smax = int(k_cache.size(1)), nkv = int(k_cache.size(2));
  BEAVER_CHECK(nkv > 0 && nh % nkv == 0, op, ": nh ", nh, " is not a multiple of nkv ", nkv);
  if (B == 0 || nh == 0) return;
  const int group = nh / nkv;
  const int gh = group % 4 == 0 ? 4 : group % 2 == 0 ? 2 : 1;

  // Enough splits to give every multiprocessor several blocks, but at least 256 keys each.
  int device = 0, n_sm = 0;
  BEAVER_CUDA_CHECK(cudaGetDevice(&device));
  BEAVER_CUDA_CHECK(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, device));
  const int64_t blocks = int64_t(B) * nkv * (group / gh);
  int n_split = int(std::clamp<int64_t>((4 * int64_t(n_sm) + blocks - 1) / blocks, 1, 64));
  n_split = std::max(1, std::min(n_split, (Smax + 255) / 256));

  const size_t slots = size_t(B) * nh * n_split;
  float* scratch = static_cast<float*>(ctx.scratch(slots * (size_t(d) + 2) * sizeof(float)));
  const DecParams p{cbf(q),    cbf(k_cache), cbf(v_cache), mbf(out),     ranges.ptr<int32_t>(),
                    scratch,   scratch + slots * size_t(d), Smax, nh,    nkv,
                    group,     group / gh,   n_split,      scale * kLog2e};
  const cudaStream_t st = stream_of(ctx);
  if (d == 64) {
    if (gh == 4) launch_decode<64, 4>(p, B, st);
    else if (gh == 2) launch_decode<64, 2>(p, B, st);
    else launch_decode<64, 1>(p, B, st);
  } else {
    if (gh == 4) launch_decode<128, 4>(p, B, st);
    else if (gh == 2) launch_decode<128, 2>(p, B, st);
    else launch_decode<128, 1>(p, B, st);
  }
}

void kv_append(Context& ctx, const Tensor& k_new, const Tensor& v_new, const Tensor& k_cache,
               const Tensor& v_cache, const Tensor& pos) {
  constexpr const char* op = "kv_append";
  expect_dtype(k_new, DType::BF16, op, "k_new");
  expect_dtype(v_new, DType::BF16, op, "v_new");
  expect_dtype(k_cache, DType::BF16, op, "k_cache");
  expect_dtype(v_cache, DType::BF16, op, "v_cache");
  expect_dtype(pos, DType::I32, op, "pos");
  const int B = int(k_new.size(0)), n = int(k_new.size(1));
  const int Smax = int(k_cache.size(1));
  const int64_t row = k_new.size(2) * k_new.size(3);  // elements per token row
  if (B == 0 || n == 0 || row == 0) return;
  const cudaStream_t st = stream_of(ctx);
  const int threads = 256;
  const auto grid_for = [&](int64_t vecs) {
    return dim3(unsigned(std::clamp<int64_t>((int64_t(n) * vecs + threads - 1) / threads, 1, 1024)),
                unsigned(B), 2u);
  };
  bool aligned = row % 8 == 0;
  for (const Tensor* t : {&k_new, &v_new, &k_cache, &v_cache})
    aligned = aligned && reinterpret_cast<uintptr_t>(t->data) % 16 == 0;
  if (aligned) {  // 16-byte vectors
    const int64_t vecs = row / 8;
    kv_append_kernel<uint4><<<grid_for(vecs), threads, 0, st>>>(
        static_cast<const uint4*>(k_new.data), static_cast<const uint4*>(v_new.data),
        static_cast<uint4*>(k_cache.data), static_cast<uint4*>(v_cache.data),
        pos.ptr<int32_t>(), n, Smax, vecs);
  } else {
    kv_append_kernel<uint16_t><<<grid_for(row), threads, 0, st>>>(
        static_cast<const uint16_t*>(k_new.data), static_cast<const uint16_t*>(v_new.data),
        static_cast<uint16_t*>(k_cache.data), static_cast<uint16_t*>(v_cache.data),
        pos.ptr<int32_t>(), n, Smax, row);
  }
  BEAVER_CUDA_LAUNCH_CHECK();
}

}  // namespace beaver::ops::cuda
