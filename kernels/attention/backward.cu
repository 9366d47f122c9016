// Deterministic flash attention backward: D = rowsum(dout * out), dK/dV per KV block, dQ per
// query block, no atomics (see tiles.cuh).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "csrc/cuda_check.h"
#include "csrc/ops/attention.h"
#include "kernels/attention/host.cuh"
#include "kernels/attention/tiles.cuh"

namespace beaver::ops::cuda {
namespace {

using namespace attn;  // NOLINT: the attention building blocks
using detail::stream_of;

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
    acc = detail::warp_sum(acc);
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
    const int buf = pipeline_step(it, n_iter, load_q);
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
    const int buf = pipeline_step(t, n_tiles, load_kv);
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
    mma_acc_kn<HD, BN>(s, k_s, dq);  // dQ += dS·K
    __syncthreads();
  }
  const float mul[2] = {row_ok[0] ? p.scale : 0.0f, row_ok[1] ? p.scale : 0.0f};
  store_rows<HD>(dq, mul, sQ, warp * 16, p.dq + qoff + int64_t(warp) * 16 * qstride, qstride,
                 rows - warp * 16);
}

constexpr int kDqWarps = 4, kDqBN = 64;
constexpr int kDkvWarps = 4;
template <int HD>
constexpr int dkdv_bm() {
  return HD == 128 ? 32 : 64;  // keeps dK, dV, S^T and dP^T in registers without spilling
}


template <int HD>
void launch_bwd(Context& ctx, const BwdParams& p, int B) {
  const cudaStream_t st = stream_of(ctx);
  const int64_t n_rows = int64_t(B) * p.S * p.nh;
  attn_bwd_delta_kernel<HD><<<unsigned((n_rows + 7) / 8), 256, 0, st>>>(p, n_rows);
  BEAVER_CUDA_LAUNCH_CHECK();

  constexpr int BN = kDkvWarps * 16, BMq = dkdv_bm<HD>();
  const size_t smem_kv = size_t(2 * BN + 4 * BMq) * HD * sizeof(bf16_t) + 4 * BMq * sizeof(float);
  auto kv_kernel = attn_bwd_dkdv_kernel<HD, kDkvWarps, BMq>;
  set_smem(ctx, kv_kernel, smem_kv);
  const dim3 grid_kv(unsigned((p.S + BN - 1) / BN), unsigned(p.nkv), unsigned(B));
  kv_kernel<<<grid_kv, kDkvWarps * 32, smem_kv, st>>>(p);
  BEAVER_CUDA_LAUNCH_CHECK();

  constexpr int BM = kDqWarps * 16;
  const size_t smem_q = size_t(2 * BM + 4 * kDqBN) * HD * sizeof(bf16_t);
  auto q_kernel = attn_bwd_dq_kernel<HD, kDqWarps, kDqBN>;
  set_smem(ctx, q_kernel, smem_q);
  const dim3 grid_q(unsigned((p.S + BM - 1) / BM), unsigned(p.nh), unsigned(B));
  q_kernel<<<grid_q, kDqWarps * 32, smem_q, st>>>(p);
  BEAVER_CUDA_LAUNCH_CHECK();
}

}  // namespace

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
    launch_bwd<64>(ctx, p, B);
  else
    launch_bwd<128>(ctx, p, B);
}

}  // namespace beaver::ops::cuda
