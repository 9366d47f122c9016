// AdamW over the flat parameter vector: argument checks (including the decay segments, which
// must lie inside [0, N) and not overlap), dispatch, and the CPU twin. The CPU twin walks
// fixed-size chunks in parallel; within a chunk it visits the runs of "decay" and "no decay"
// elements in order, so each element is read and written exactly once (master, m, v and the
// optional low-precision copy in the same pass). Every element's arithmetic is independent of
// the others, so the result does not depend on the thread count.
#include "csrc/ops/adamw.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "csrc/ops/cpu_clones.h"
#include "csrc/ops/cpu_threads.h"
#include "csrc/ops/dispatch.h"

// The fp32 update runs as BEAVER_CPU_CLONES (cpu_clones.h): no a * b + c may be fused.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace beaver::ops {
namespace {

// A run of elements [begin, end) with one decay factor (1 - lr * wd, or 1).
struct Run {
  int64_t begin;
  int64_t end;
  bool decay;
};

// Sorted, checked segments turned into runs covering [0, n) exactly.
std::vector<Run> make_runs(const std::vector<ParamSegment>& segs, int64_t n) {
  std::vector<ParamSegment> s = segs;
  std::sort(s.begin(), s.end(),
            [](const ParamSegment& a, const ParamSegment& b) { return a.offset < b.offset; });
  std::vector<Run> runs;
  int64_t pos = 0;
  for (const auto& seg : s) {
    if (seg.size == 0) continue;
    if (seg.offset > pos) runs.push_back({pos, seg.offset, false});
    runs.push_back({seg.offset, seg.offset + seg.size, true});
    pos = seg.offset + seg.size;
  }
  if (pos < n) runs.push_back({pos, n, false});
  return runs;
}

void check_segments(const std::vector<ParamSegment>& segs, int64_t n) {
  for (size_t i = 0; i < segs.size(); ++i) {
    const auto& s = segs[i];
    if (s.offset < 0 || s.size < 0 || s.offset > n || s.size > n - s.offset)
      BEAVER_FAIL("adamw_step: decay_segments[", i, "] = [", s.offset, ", ", s.offset + s.size,
                  ") is not inside the parameter vector [0, ", n, ")");
  }
  const auto by_offset = [](const ParamSegment& a, const ParamSegment& b) {
    return a.offset < b.offset;
  };
  // Neighbours in offset order must not overlap. The segments usually come sorted (the model
  // lists them in plan order), and then no index vector is allocated for every step.
  const bool sorted = std::is_sorted(segs.begin(), segs.end(), by_offset);
  std::vector<size_t> order(sorted ? 0 : segs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return by_offset(segs[a], segs[b]); });
  const auto at = [&](size_t k) { return sorted ? k : order[k]; };
  for (size_t k = 1; k < segs.size(); ++k) {
    const auto& a = segs[at(k - 1)];
    const auto& b = segs[at(k)];
    if (a.size > 0 && b.size > 0 && b.offset < a.offset + a.size)
      BEAVER_FAIL("adamw_step: decay_segments[", at(k - 1), "] = [", a.offset, ", ",
                  a.offset + a.size, ") and decay_segments[", at(k), "] = [", b.offset, ", ",
                  b.offset + b.size, ") overlap");
  }
}

}  // namespace

void adamw_step(Context& ctx, const Tensor& master, const Tensor& grad, const Tensor& m,
                const Tensor& v, const Tensor& lowp, const Tensor& grad_scale,
                const std::vector<ParamSegment>& decay_segments, const AdamWConfig& cfg) {
  constexpr std::string_view op = "adamw_step";
  expect_defined(master, op, "master");
  expect_dtype(master, DType::F32, op, "master");
  expect_rank(master, 1, op, "master");
  const Shape s = master.shape;
  expect_defined(grad, op, "grad");
  expect_shape(grad, s, op, "grad");
  if (grad.dtype != DType::F32 && grad.dtype != DType::BF16)
    BEAVER_FAIL(op, ": grad has dtype ", dtype_name(grad.dtype), " but expected f32 or bf16");
  expect_defined(m, op, "m");
  expect_shape(m, s, op, "m");
  expect_dtype(m, DType::F32, op, "m");
  expect_defined(v, op, "v");
  expect_shape(v, s, op, "v");
  expect_dtype(v, DType::F32, op, "v");
  if (lowp.data != nullptr) {
    expect_shape(lowp, s, op, "lowp");
    if (lowp.dtype != DType::BF16 && lowp.dtype != DType::F16)
      BEAVER_FAIL(op, ": lowp has dtype ", dtype_name(lowp.dtype), " but expected bf16 or f16");
  }
  if (grad_scale.data != nullptr) {
    expect_shape(grad_scale, Shape{1}, op, "grad_scale");
    expect_dtype(grad_scale, DType::F32, op, "grad_scale");
  }
  expect_on(ctx, {&master, &grad, &m, &v, &lowp, &grad_scale}, op);
  BEAVER_CHECK(cfg.step >= 1, op, ": step must be >= 1 (1-based), got ", cfg.step);
  BEAVER_CHECK(cfg.beta1 >= 0.0f && cfg.beta1 < 1.0f, op, ": beta1 must be in [0, 1), got ",
               cfg.beta1);
  BEAVER_CHECK(cfg.beta2 >= 0.0f && cfg.beta2 < 1.0f, op, ": beta2 must be in [0, 1), got ",
               cfg.beta2);
  BEAVER_CHECK(cfg.eps > 0.0f, op, ": eps must be > 0, got ", cfg.eps);
  BEAVER_CHECK(std::isfinite(cfg.lr) && std::isfinite(cfg.weight_decay), op,
               ": lr and weight_decay must be finite, got ", cfg.lr, " and ", cfg.weight_decay);
  check_segments(decay_segments, master.numel());
  BEAVER_DISPATCH(ctx, adamw_step, ctx, master, grad, m, v, lowp, grad_scale, decay_segments,
                  cfg);
}

namespace cpu {
namespace {

// One run of elements: the whole update for each element in registers.
template <typename Low>
void update(int64_t b, int64_t e, float* p, const float* g, float* m, float* v, Low* low,
            float scale, float decay, float beta1, float beta2, float step_size,
            float sqrt_bc2, float eps) {
  const float c1 = 1.0f - beta1, c2 = 1.0f - beta2;
  for (int64_t i = b; i < e; ++i) {
    const float gi = g[i] * scale;
    const float pi = p[i] * decay;
    const float mi = beta1 * m[i] + c1 * gi;
    const float vi = beta2 * v[i] + c2 * gi * gi;
    const float pn = pi - step_size * mi / (std::sqrt(vi) / sqrt_bc2 + eps);
    m[i] = mi;
    v[i] = vi;
    p[i] = pn;
    if constexpr (std::is_same_v<Low, bf16>) low[i] = to_bf16(pn);
    if constexpr (std::is_same_v<Low, f16>) low[i] = to_f16(pn);
  }
}

// The fp32 update (every CPU model: no low-precision copy) in the widest clone the CPU has.
BEAVER_CPU_CLONES void update_f32(int64_t b, int64_t e, float* p, const float* g, float* m,
                                  float* v, float scale, float decay, float beta1, float beta2,
                                  float step_size, float sqrt_bc2, float eps) {
  update<float>(b, e, p, g, m, v, nullptr, scale, decay, beta1, beta2, step_size, sqrt_bc2, eps);
}

constexpr int64_t kChunk = 1 << 16;

// The runs of the last call's segments, kept in the context: a training loop passes the same
// segments every step, and rebuilding them would allocate every step.
struct RunCache {
  std::vector<ParamSegment> segs;
  int64_t n = -1;
  std::vector<Run> runs;
};

const std::vector<Run>& cached_runs(Context& ctx, const std::vector<ParamSegment>& segs,
                                    int64_t n) {
  RunCache& c = ctx.backend_cache<RunCache>();
  const auto same = [](const ParamSegment& a, const ParamSegment& b) {
    return a.offset == b.offset && a.size == b.size;
  };
  if (c.n != n || !std::equal(segs.begin(), segs.end(), c.segs.begin(), c.segs.end(), same)) {
    c.runs = make_runs(segs, n);
    c.segs = segs;
    c.n = n;
  }
  return c.runs;
}

template <typename Low>
void run_all(Context& ctx, const std::vector<Run>& runs, int64_t n, float* p, const float* g,
             float* m, float* v, Low* low, float scale, float decay, float beta1, float beta2,
             float step_size, float sqrt_bc2, float eps) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  parallel_range(ctx.threads(), chunks, true, [&](int64_t part_begin, int64_t part_end) {
    for (int64_t c = part_begin; c < part_end; ++c) {
      const int64_t cb = c * kChunk, ce = std::min(n, cb + kChunk);
      // First run that ends after cb.
      auto it = std::upper_bound(runs.begin(), runs.end(), cb,
                                 [](int64_t x, const Run& r) { return x < r.end; });
      for (; it != runs.end() && it->begin < ce; ++it) {
        const int64_t b = std::max(cb, it->begin), e = std::min(ce, it->end);
        const float dk = it->decay ? decay : 1.0f;
        if constexpr (std::is_same_v<Low, float>)
          update_f32(b, e, p, g, m, v, scale, dk, beta1, beta2, step_size, sqrt_bc2, eps);
        else
          update(b, e, p, g, m, v, low, scale, dk, beta1, beta2, step_size, sqrt_bc2, eps);
      }
    }
  });
}

}  // namespace

void adamw_step(Context& ctx, const Tensor& master, const Tensor& grad, const Tensor& m,
                const Tensor& v, const Tensor& lowp, const Tensor& grad_scale,
                const std::vector<ParamSegment>& decay_segments, const AdamWConfig& cfg) {
  expect_dtype(grad, DType::F32, "adamw_step", "grad (CPU backend)");
  const int64_t n = master.numel();
  const std::vector<Run>& runs = cached_runs(ctx, decay_segments, n);
  const float scale = grad_scale.data != nullptr ? grad_scale.ptr<float>()[0] : 1.0f;
  const float decay = 1.0f - cfg.lr * cfg.weight_decay;
  // Bias corrections in double (beta^step for large steps), used in fp32 like PyTorch.
  const double bc1 = 1.0 - std::pow(double(cfg.beta1), double(cfg.step));
  const double bc2 = 1.0 - std::pow(double(cfg.beta2), double(cfg.step));
  const float step_size = float(double(cfg.lr) / bc1);
  const float sqrt_bc2 = float(std::sqrt(bc2));
  float* p = master.ptr<float>();
  const float* g = grad.ptr<float>();
  float* mm = m.ptr<float>();
  float* vv = v.ptr<float>();
  if (lowp.data == nullptr)
    run_all<float>(ctx, runs, n, p, g, mm, vv, nullptr, scale, decay, cfg.beta1, cfg.beta2,
                   step_size, sqrt_bc2, cfg.eps);
  else if (lowp.dtype == DType::BF16)
    run_all(ctx, runs, n, p, g, mm, vv, lowp.ptr<bf16>(), scale, decay, cfg.beta1, cfg.beta2,
            step_size, sqrt_bc2, cfg.eps);
  else
    run_all(ctx, runs, n, p, g, mm, vv, lowp.ptr<f16>(), scale, decay, cfg.beta1, cfg.beta2,
            step_size, sqrt_bc2, cfg.eps);
}

}  // namespace cpu
}  // namespace beaver::ops
