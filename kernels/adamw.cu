// CUDA backend of AdamW over one flat parameter vector (csrc/ops/adamw.h).
// Layout: master, m, v f32 [N]; grad f32 or bf16 [N]; lowp (optional) bf16 or f16 [N];
// grad_scale (optional) f32 [1] on the device, read by every thread (no host round trip).
// One launch: a grid-stride loop over packs of 4 elements (16-byte f32 accesses, 8-byte
// 16-bit accesses) when every pointer is 16-byte aligned (lowp and bf16 grad 8-byte), one
// element at a time otherwise. The minimum traffic is 28 bytes per parameter with bf16 grad
// and a bf16 copy (read p, m, v, g; write p, m, v, lowp).
// Decay segments: sorted and merged on the host, copied into ctx.scratch with
// cudaMemcpyAsync on the context stream (a few hundred bytes; the kernel that reads them is
// queued behind the copy), then each thread binary-searches the segment containing the first
// element of its pack and walks forward across the pack.
// Precision: fp32 in the formula's order; bias corrections are computed on the host in double
// and passed as fp32 lr / (1 - beta1^step) and sqrt(1 - beta2^step), the same expression and
// order as the CPU twin; lowp is p rounded to nearest-even.
// Determinism: elementwise, bitwise reproducible.
#include <algorithm>
#include <cmath>
#include <vector>

#include "csrc/ops/adamw.h"
#include "kernels/common.cuh"

namespace beaver::ops::cuda {

using namespace detail;

namespace {

constexpr int kPack = 4;
constexpr int kThreads = 256;

struct AdamWParams {
  float lr, beta1, beta2, eps, decay_factor;  // decay_factor = 1 - lr * weight_decay
  float step_size;                            // lr / (1 - beta1^step)
  float sqrt_bc2;                             // sqrt(1 - beta2^step)
};

// Index of the last segment with begin <= i, or -1.
__device__ __forceinline__ int find_segment(const int64_t* __restrict__ begin, int n, int64_t i) {
  int lo = 0, hi = n;  // answer in [lo - 1, hi - 1]
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (begin[mid] <= i)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo - 1;
}

template <typename G, typename L, int P>
__device__ __forceinline__ void adamw_pack(int64_t i, float* __restrict__ master,
                                           const G* __restrict__ grad, float* __restrict__ m,
                                           float* __restrict__ v, L* __restrict__ lowp,
                                           float gscale, const int64_t* __restrict__ seg_begin,
                                           const int64_t* __restrict__ seg_end, int nseg,
                                           const AdamWParams& hp) {
  float p[P], g[P], mm[P], vv[P];
  load_pack<float, P>(master + i, p);
  load_pack<G, P>(grad + i, g);
  load_pack<float, P>(m + i, mm);
  load_pack<float, P>(v + i, vv);
  int s = nseg > 0 ? find_segment(seg_begin, nseg, i) : -1;
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int64_t e = i + j;
    while (s + 1 < nseg && seg_begin[s + 1] <= e) ++s;
    const bool decay = s >= 0 && e < seg_end[s];
    const float gj = g[j] * gscale;
    float pj = decay ? p[j] * hp.decay_factor : p[j];
    mm[j] = hp.beta1 * mm[j] + (1.0f - hp.beta1) * gj;
    vv[j] = hp.beta2 * vv[j] + (1.0f - hp.beta2) * gj * gj;
    pj = pj - hp.step_size * mm[j] / (sqrtf(vv[j]) / hp.sqrt_bc2 + hp.eps);
    p[j] = pj;
  }
  store_pack<float, P>(master + i, p);
  store_pack<float, P>(m + i, mm);
  store_pack<float, P>(v + i, vv);
  if (lowp) store_pack<L, P>(lowp + i, p);
}

template <typename G, typename L, int P>
__global__ void __launch_bounds__(kThreads)
    adamw_kernel(int64_t n, float* __restrict__ master, const G* __restrict__ grad,
                 float* __restrict__ m, float* __restrict__ v, L* __restrict__ lowp,
                 const float* __restrict__ grad_scale, const int64_t* __restrict__ segs, int nseg,
                 AdamWParams hp) {
  const float gscale = grad_scale ? *grad_scale : 1.0f;
  const int64_t* seg_begin = segs;
  const int64_t* seg_end = segs + nseg;
  const int64_t packs = n / P;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t c = tid; c < packs; c += stride)
    adamw_pack<G, L, P>(c * P, master, grad, m, v, lowp, gscale, seg_begin, seg_end, nseg, hp);
  for (int64_t i = packs * P + tid; i < n; i += stride)
    adamw_pack<G, L, 1>(i, master, grad, m, v, lowp, gscale, seg_begin, seg_end, nseg, hp);
}

}  // namespace

void adamw_step(Context& ctx, const Tensor& master, const Tensor& grad, const Tensor& m,
                const Tensor& v, const Tensor& lowp, const Tensor& grad_scale,
                const std::vector<ParamSegment>& decay_segments, const AdamWConfig& cfg) {
  constexpr const char* op = "adamw_step";
  const int64_t n = master.numel();
  BEAVER_CHECK(master.dtype == DType::F32, op, ": master ", master.str(), " must be f32");
  BEAVER_CHECK(m.dtype == DType::F32 && m.numel() == n, op, ": m ", m.str(), " must be f32 [",
               n, "]");
  BEAVER_CHECK(v.dtype == DType::F32 && v.numel() == n, op, ": v ", v.str(), " must be f32 [",
               n, "]");
  BEAVER_CHECK(grad.numel() == n && (grad.dtype == DType::F32 || grad.dtype == DType::BF16), op,
               ": grad ", grad.str(), " must be f32 or bf16 [", n, "]");
  if (lowp.data)
    BEAVER_CHECK(lowp.numel() == n && (lowp.dtype == DType::BF16 || lowp.dtype == DType::F16), op,
                 ": lowp ", lowp.str(), " must be bf16 or f16 [", n, "]");
  if (grad_scale.data)
    BEAVER_CHECK(grad_scale.dtype == DType::F32 && grad_scale.numel() == 1, op, ": grad_scale ",
                 grad_scale.str(), " must be f32 [1]");
  BEAVER_CHECK(cfg.step >= 1, op, ": step ", cfg.step, " must be >= 1 (1-based)");
  if (n == 0) return;

  // Sort and merge the decay ranges, clipped to [0, n), so the device search sees disjoint
  // ascending segments.
  std::vector<ParamSegment> segs;
  for (const ParamSegment& s : decay_segments) {
    BEAVER_CHECK(s.offset >= 0 && s.size >= 0 && s.offset + s.size <= n, op,
                 ": decay segment [", s.offset, ", ", s.offset + s.size,
                 ") lies outside the parameter vector of ", n);
    if (s.size > 0) segs.push_back(s);
  }
  std::sort(segs.begin(), segs.end(),
            [](const ParamSegment& a, const ParamSegment& b) { return a.offset < b.offset; });
  std::vector<int64_t> table;  // begins, then ends
  std::vector<int64_t> ends;
  for (const ParamSegment& s : segs) {
    if (!ends.empty() && s.offset <= ends.back()) {
      ends.back() = std::max(ends.back(), s.offset + s.size);
    } else {
      table.push_back(s.offset);
      ends.push_back(s.offset + s.size);
    }
  }
  const int nseg = int(table.size());
  table.insert(table.end(), ends.begin(), ends.end());
  const int64_t* dev_segs = nullptr;
  const float wd = cfg.weight_decay;
  if (nseg > 0 && wd != 0.0f) {
    auto* d = static_cast<int64_t*>(ctx.scratch(table.size() * sizeof(int64_t)));
    BEAVER_CUDA_CHECK(cudaMemcpyAsync(d, table.data(), table.size() * sizeof(int64_t),
                                      cudaMemcpyHostToDevice, stream_of(ctx)));
    dev_segs = d;
  }

  AdamWParams hp{};
  hp.lr = cfg.lr;
  hp.beta1 = cfg.beta1;
  hp.beta2 = cfg.beta2;
  hp.eps = cfg.eps;
  hp.decay_factor = 1.0f - cfg.lr * wd;
  const double bc1 = 1.0 - std::pow(double(cfg.beta1), double(cfg.step));
  const double bc2 = 1.0 - std::pow(double(cfg.beta2), double(cfg.step));
  hp.step_size = float(double(cfg.lr) / bc1);
  hp.sqrt_bc2 = float(std::sqrt(bc2));
  const int nseg_used = dev_segs ? nseg : 0;

  const auto* gs = static_cast<const float*>(grad_scale.data);
  with_float(grad.dtype, op, "grad", [&](auto gtag) {
    using G = typename decltype(gtag)::type;
    auto run = [&](auto ltag) {
      using L = typename decltype(ltag)::type;
      const bool vec = aligned(master.data, 16) && aligned(m.data, 16) && aligned(v.data, 16) &&
                       aligned(grad.data, kPack * sizeof(G)) &&
                       (!lowp.data || aligned(lowp.data, kPack * sizeof(L)));
      const unsigned grid = grid_for(ctx, vec ? n / kPack + 1 : n, kThreads, 4);
      auto* lp = static_cast<L*>(lowp.data);
      if (vec)
        adamw_kernel<G, L, kPack><<<grid, kThreads, 0, stream_of(ctx)>>>(
            n, master.ptr<float>(), static_cast<const G*>(grad.data), m.ptr<float>(),
            v.ptr<float>(), lp, gs, dev_segs, nseg_used, hp);
      else
        adamw_kernel<G, L, 1><<<grid, kThreads, 0, stream_of(ctx)>>>(
            n, master.ptr<float>(), static_cast<const G*>(grad.data), m.ptr<float>(),
            v.ptr<float>(), lp, gs, dev_segs, nseg_used, hp);
      BEAVER_CUDA_LAUNCH_CHECK();
    };
    if (lowp.data && lowp.dtype == DType::F16)
      run(Tag<f16_t>{});
    else
      run(Tag<bf16_t>{});  // also the no-lowp case (the pointer is null)
  });
}

}  // namespace beaver::ops::cuda
