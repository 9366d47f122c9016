// Flash attention forward: causal, GQA, per-row ranges; out and lse (see tiles.cuh).
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
    const int buf = pipeline_step(t, n_tiles, load_kv);
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

    mma_acc_kn<HD, BN>(s, v_s, o);  // O += P·V
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

constexpr int kFwdWarps = 4, kFwdBN = 64;

template <int HD>
void launch_fwd(Context& ctx, const FwdParams& p, int B) {
  const cudaStream_t st = stream_of(ctx);
  constexpr int BM = kFwdWarps * 16;
  const size_t smem = size_t(BM + 4 * kFwdBN) * HD * sizeof(bf16_t);
  auto kernel = attn_fwd_kernel<HD, kFwdWarps, kFwdBN>;
  set_smem(ctx, kernel, smem);
  const dim3 grid(unsigned((p.S + BM - 1) / BM), unsigned(p.nh), unsigned(B));
  kernel<<<grid, kFwdWarps * 32, smem, st>>>(p);
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
    launch_fwd<64>(ctx, p, B);
  else
    launch_fwd<128>(ctx, p, B);
}

}  // namespace beaver::ops::cuda
