// Split-KV decode attention: one query row per sequence against its KV cache, per-split partials
// merged in split order (see tiles.cuh). The split count follows the kernel's occupancy and each
// row's real length (kernels/attention/decode_plan.h).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "csrc/cuda_check.h"
#include "csrc/ops/attention.h"
#include "kernels/attention/decode_plan.h"
#include "kernels/attention/host.cuh"
#include "kernels/attention/tiles.cuh"

namespace beaver::ops::cuda {
namespace {

using namespace attn;  // NOLINT: the attention building blocks
using detail::stream_of;

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
  const DecodeSplit sp = decode_split(end - begin, p.n_split);
  if (split >= sp.used) return;  // the row's real length needs fewer splits (uniform per block)
  const int s0 = begin + split * sp.per, s1 = min(end, s0 + sp.per);
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
  int begin, end;
  row_range(p.ranges, b, p.Smax, begin, end);
  const int used = decode_split(end - begin, p.n_split).used;
  float mx = kNegInf;
  for (int s = 0; s < used; ++s) mx = fmaxf(mx, p.part_ml[2 * (slot0 + s)]);
  const float m_use = mx == kNegInf ? 0.0f : mx;
  float a = 0.0f, l = 0.0f;
  for (int s = 0; s < used; ++s) {
    const float c = ex2(p.part_ml[2 * (slot0 + s)] - m_use);
    a += p.part_acc[(slot0 + s) * HD + d] * c;
    l += p.part_ml[2 * (slot0 + s) + 1] * c;
  }
  p.out[(int64_t(b) * p.nh + h) * HD + d] = __float2bfloat16(l > 0.0f ? a / l : 0.0f);
}

// Sizes the grid's split count for this kernel's occupancy (queried once per context), takes
// the partials from the context's scratch, and launches the split and merge kernels.
template <int HD, int GH>
void launch_decode(Context& ctx, DecParams p, int B) {
  auto kernel = decode_split_kernel<HD, GH>;
  const int64_t rows = int64_t(B) * p.nkv * p.n_chunks;
  p.n_split = decode_split_count(rows, detail::sm_count(ctx),
                                 blocks_per_sm(ctx, kernel, kDecWarps * 32), p.Smax);
  const size_t slots = size_t(B) * p.nh * p.n_split;
  float* scratch = static_cast<float*>(ctx.scratch(slots * (size_t(HD) + 2) * sizeof(float)));
  p.part_acc = scratch;
  p.part_ml = scratch + slots * size_t(HD);
  const cudaStream_t st = stream_of(ctx);
  const dim3 grid(unsigned(p.n_split), unsigned(rows / B), unsigned(B));
  kernel<<<grid, kDecWarps * 32, 0, st>>>(p);
  BEAVER_CUDA_LAUNCH_CHECK();
  decode_reduce_kernel<HD><<<dim3(unsigned(p.nh), unsigned(B)), HD, 0, st>>>(p);
  BEAVER_CUDA_LAUNCH_CHECK();
}

}  // namespace

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

  // part_acc, part_ml and n_split are set by launch_decode.
  const DecParams p{cbf(q),  cbf(k_cache), cbf(v_cache), mbf(out),   ranges.ptr<int32_t>(),
                    nullptr, nullptr,      Smax,         nh,         nkv,
                    group,   group / gh,   1,            scale * kLog2e};
  if (d == 64) {
    if (gh == 4) launch_decode<64, 4>(ctx, p, B);
    else if (gh == 2) launch_decode<64, 2>(ctx, p, B);
    else launch_decode<64, 1>(ctx, p, B);
  } else {
    if (gh == 4) launch_decode<128, 4>(ctx, p, B);
    else if (gh == 2) launch_decode<128, 2>(ctx, p, B);
    else launch_decode<128, 1>(ctx, p, B);
  }
}

}  // namespace beaver::ops::cuda
