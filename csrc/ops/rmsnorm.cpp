// Fused residual add + RMSNorm: argument checks, dispatch, and the CPU twin.
// CPU precision: the sum of squares of a row and the row's backward dot product accumulate in
// double over 8 fixed lanes (vectorisable, order fixed), everything else is fp32 in HF's order.
// Aliasing: every element is read before the same element is written, so residual_out may
// alias residual (and dx may alias dout, h or dresidual) without corrupting later reads.
// dweight: rows are cut into fixed chunks of kRowChunk; each chunk sums its rows in increasing t
// into its own partial row, and the partials are added in chunk order. The chunking does not
// depend on the thread count, so dweight is bitwise the same for any number of threads.
#include "csrc/ops/rmsnorm.h"

#include <algorithm>
#include <cmath>

#include "csrc/ops/cpu_clones.h"
#include "csrc/ops/cpu_threads.h"
#include "csrc/ops/dispatch.h"

// The row loops run as BEAVER_CPU_CLONES (cpu_clones.h): no a * b + c may be fused.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace beaver::ops {
namespace {

// H = last dimension, T = product of the leading ones.
void row_dims(const Tensor& x, std::string_view op, int64_t& rows, int64_t& h) {
  BEAVER_CHECK(x.rank() >= 1, op, ": x must have at least one dimension, got shape ",
               x.shape.str());
  h = x.size(-1);
  BEAVER_CHECK(h > 0, op, ": the normalised dimension is empty (shape ", x.shape.str(), ")");
  rows = x.numel() / h;
}

void expect_float(const Tensor& t, std::string_view op, std::string_view name) {
  BEAVER_CHECK(is_float(t.dtype), op, ": ", name, " has dtype ", dtype_name(t.dtype),
               " but expected a float dtype");
}

}  // namespace

void rmsnorm_fwd(Context& ctx, const Tensor& x, const Tensor& residual, const Tensor& weight,
                 float eps, const Tensor& out, const Tensor& residual_out, const Tensor& rstd) {
  constexpr std::string_view op = "rmsnorm_fwd";
  int64_t rows = 0, h = 0;
  row_dims(x, op, rows, h);
  expect_float(x, op, "x");
  expect_defined(x, op, "x");
  BEAVER_CHECK(std::isfinite(eps) && eps >= 0.0f, op, ": eps must be finite and >= 0, got ", eps);
  if (residual.defined()) {
    expect_shape(residual, x.shape, op, "residual");
    expect_dtype(residual, x.dtype, op, "residual");
  }
  expect_shape(weight, Shape{h}, op, "weight");
  expect_dtype(weight, x.dtype, op, "weight");
  expect_defined(weight, op, "weight");
  expect_shape(out, x.shape, op, "out");
  expect_dtype(out, x.dtype, op, "out");
  expect_defined(out, op, "out");
  if (residual_out.defined()) {
    expect_shape(residual_out, x.shape, op, "residual_out");
    expect_dtype(residual_out, x.dtype, op, "residual_out");
  }
  if (rstd.defined()) {
    expect_shape(rstd, Shape{rows}, op, "rstd");
    expect_dtype(rstd, DType::F32, op, "rstd");
  }
  expect_on(ctx, {&x, &residual, &weight, &out, &residual_out, &rstd}, op);
  BEAVER_DISPATCH(ctx, rmsnorm_fwd, ctx, x, residual, weight, eps, out, residual_out, rstd);
}

void rmsnorm_bwd(Context& ctx, const Tensor& dout, const Tensor& h, const Tensor& weight,
                 const Tensor& rstd, const Tensor& dresidual, const Tensor& dx,
                 const Tensor& dweight, bool accumulate_weight) {
  constexpr std::string_view op = "rmsnorm_bwd";
  int64_t rows = 0, width = 0;
  row_dims(h, op, rows, width);
  expect_float(h, op, "h");
  expect_defined(h, op, "h");
  expect_shape(dout, h.shape, op, "dout");
  expect_dtype(dout, h.dtype, op, "dout");
  expect_defined(dout, op, "dout");
  expect_shape(weight, Shape{width}, op, "weight");
  expect_dtype(weight, h.dtype, op, "weight");
  expect_defined(weight, op, "weight");
  expect_shape(rstd, Shape{rows}, op, "rstd");
  expect_dtype(rstd, DType::F32, op, "rstd");
  expect_defined(rstd, op, "rstd");
  if (dresidual.defined()) {
    expect_shape(dresidual, h.shape, op, "dresidual");
    expect_dtype(dresidual, h.dtype, op, "dresidual");
  }
  expect_shape(dx, h.shape, op, "dx");
  expect_dtype(dx, h.dtype, op, "dx");
  expect_defined(dx, op, "dx");
  expect_shape(dweight, Shape{width}, op, "dweight");
  expect_dtype(dweight, DType::F32, op, "dweight");
  expect_defined(dweight, op, "dweight");
  expect_on(ctx, {&dout, &h, &weight, &rstd, &dresidual, &dx, &dweight}, op);
  BEAVER_DISPATCH(ctx, rmsnorm_bwd, ctx, dout, h, weight, rstd, dresidual, dx, dweight,
                  accumulate_weight);
}

namespace cpu {
namespace {

constexpr int kLanes = 8;
constexpr int64_t kRowChunk = 16;

// Sum of a[j] * b[j] in double, over 8 interleaved lanes then the lanes in order.
BEAVER_CPU_CLONES double dot_lanes(const float* a, const float* b, int64_t n) {
  double acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += double(a[j + l]) * double(b[j + l]);
  for (; j < n; ++j) acc[j % kLanes] += double(a[j]) * double(b[j]);
  double s = 0.0;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

// Rows [t0, t1) of the forward (tmp: h floats when the summed row has nowhere else to go).
BEAVER_CPU_CLONES void fwd_rows(int64_t t0, int64_t t1, int64_t h, const float* xp,
                                const float* rp, const float* wp, float eps, float* op_,
                                float* hp, float* sp, float* tmp) {
  for (int64_t t = t0; t < t1; ++t) {
    const float* xr = xp + t * h;
    const float* hr = xr;
    if (rp) {
      const float* rr = rp + t * h;
      float* dst = hp ? hp + t * h : tmp;
      for (int64_t j = 0; j < h; ++j) dst[j] = xr[j] + rr[j];
      hr = dst;
    } else if (hp) {
      float* dst = hp + t * h;
      for (int64_t j = 0; j < h; ++j) dst[j] = xr[j];
      hr = dst;
    }
    const float var = float(dot_lanes(hr, hr, h) / double(h));
    const float r = 1.0f / std::sqrt(var + eps);
    if (sp) sp[t] = r;
    float* o = op_ + t * h;
    for (int64_t j = 0; j < h; ++j) o[j] = (hr[j] * r) * wp[j];
  }
}

// Row chunks [c0, c1) of the backward: dx and each chunk's dweight partial (wg, hn: a row each
// of scratch).
BEAVER_CPU_CLONES void bwd_chunks(int64_t c0, int64_t c1, int64_t rows, int64_t width,
                                  const float* gp, const float* hp, const float* wp,
                                  const float* sp, const float* drp, float* dxp, float* partial,
                                  float* wg, float* hn) {
  const double inv_h = 1.0 / double(width);
  for (int64_t c = c0; c < c1; ++c) {
    float* pw = partial + c * width;
    std::fill(pw, pw + width, 0.0f);
    const int64_t t1 = std::min(rows, (c + 1) * kRowChunk);
    for (int64_t t = c * kRowChunk; t < t1; ++t) {
      const float r = sp[t];
      const float* g = gp + t * width;
      const float* hr = hp + t * width;
      for (int64_t j = 0; j < width; ++j) {
        hn[j] = hr[j] * r;
        wg[j] = wp[j] * g[j];
        pw[j] += g[j] * hn[j];
      }
      const float m = float(dot_lanes(hn, wg, width) * inv_h);
      const float* dr = drp ? drp + t * width : nullptr;
      float* d = dxp + t * width;
      for (int64_t j = 0; j < width; ++j) {
        const float v = r * (wg[j] - hn[j] * m);
        d[j] = dr ? dr[j] + v : v;
      }
    }
  }
}

}  // namespace

void rmsnorm_fwd(Context& ctx, const Tensor& x, const Tensor& residual, const Tensor& weight,
                 float eps, const Tensor& out, const Tensor& residual_out, const Tensor& rstd) {
  constexpr std::string_view op = "rmsnorm_fwd (cpu)";
  expect_dtype(x, DType::F32, op, "x");
  const int64_t h = x.size(-1), rows = x.numel() / h;
  const float* xp = x.ptr<float>();
  const float* rp = residual.defined() ? residual.ptr<float>() : nullptr;
  const float* wp = weight.ptr<float>();
  float* op_ = out.ptr<float>();
  float* hp = residual_out.defined() ? residual_out.ptr<float>() : nullptr;
  float* sp = rstd.defined() ? rstd.ptr<float>() : nullptr;
  // Per thread, h floats of one row when residual_out does not hold it (context scratch, so
  // it never aliases an argument and the steady state allocates nothing).
  const bool need_tmp = rp && !hp;
  auto* tmp_all = need_tmp ? static_cast<float*>(ctx.scratch(size_t(ctx.threads() * h) * 4))
                           : nullptr;
  parallel_region(ctx.threads(), rows * h > 32768, [&](int tid, int nthreads) {
    float* tmp = need_tmp ? tmp_all + size_t(tid * h) : nullptr;
    const auto [t0, t1] = static_part(rows, tid, nthreads);
    fwd_rows(t0, t1, h, xp, rp, wp, eps, op_, hp, sp, tmp);
  });
}

void rmsnorm_bwd(Context& ctx, const Tensor& dout, const Tensor& h, const Tensor& weight,
                 const Tensor& rstd, const Tensor& dresidual, const Tensor& dx,
                 const Tensor& dweight, bool accumulate_weight) {
  constexpr std::string_view op = "rmsnorm_bwd (cpu)";
  expect_dtype(h, DType::F32, op, "h");
  const int64_t width = h.size(-1), rows = h.numel() / width;
  const float* gp = dout.ptr<float>();
  const float* hp = h.ptr<float>();
  const float* wp = weight.ptr<float>();
  const float* sp = rstd.ptr<float>();
  const float* drp = dresidual.defined() ? dresidual.ptr<float>() : nullptr;
  float* dxp = dx.ptr<float>();
  float* dwp = dweight.ptr<float>();
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  // Scratch: the chunk partials, then per thread two rows (w * g and the normalised h).
  const size_t n_partial = size_t(std::max<int64_t>(chunks, 1) * width);
  auto* partial = static_cast<float*>(
      ctx.scratch((n_partial + size_t(2 * ctx.threads() * width)) * 4));
  parallel_region(ctx.threads(), rows * width > 32768, [&](int tid, int nthreads) {
    float* wg = partial + n_partial + size_t(2 * tid * width);
    float* hn = wg + width;
    const auto [c0, c1] = static_part(chunks, tid, nthreads);
    bwd_chunks(c0, c1, rows, width, gp, hp, wp, sp, drp, dxp, partial, wg, hn);
    // Chunk partials in chunk order, parallel over columns (after every chunk is done).
#pragma omp barrier
    const auto [j0, j1] = static_part(width, tid, nthreads);
    for (int64_t j = j0; j < j1; ++j) {
      double s = 0.0;
      for (int64_t c = 0; c < chunks; ++c) s += double(partial[c * width + j]);
      dwp[j] = accumulate_weight ? dwp[j] + float(s) : float(s);
    }
  });
}

}  // namespace cpu
}  // namespace beaver::ops
