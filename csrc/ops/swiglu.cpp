// SwiGLU gate: argument checks, dispatch, and the CPU twin.
// silu is computed as g / (1 + exp(-g)) as torch does (exp: the vectorisable exp_f32 of
// cpu_exp.h on the CPU); each element's inputs are loaded before
// its outputs are stored, which is what lets dgate/dup alias gate/up.
#include "csrc/ops/swiglu.h"

#include <cmath>

#include "csrc/ops/cpu_clones.h"
#include "csrc/ops/cpu_exp.h"
#include "csrc/ops/cpu_threads.h"
#include "csrc/ops/dispatch.h"

// The loops run as BEAVER_CPU_CLONES (cpu_clones.h): no a * b + c may be fused.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace beaver::ops {
namespace {

void expect_like(const Tensor& t, const Tensor& ref, std::string_view op, std::string_view name) {
  expect_shape(t, ref.shape, op, name);
  expect_dtype(t, ref.dtype, op, name);
  expect_defined(t, op, name);
}

}  // namespace

void swiglu_fwd(Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& out) {
  constexpr std::string_view op = "swiglu_fwd";
  BEAVER_CHECK(is_float(gate.dtype), op, ": gate has dtype ", dtype_name(gate.dtype),
               " but expected a float dtype");
  expect_defined(gate, op, "gate");
  expect_like(up, gate, op, "up");
  expect_like(out, gate, op, "out");
  expect_on(ctx, {&gate, &up, &out}, op);
  BEAVER_DISPATCH(ctx, swiglu_fwd, ctx, gate, up, out);
}

void swiglu_bwd(Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& dout,
                const Tensor& dgate, const Tensor& dup) {
  constexpr std::string_view op = "swiglu_bwd";
  BEAVER_CHECK(is_float(gate.dtype), op, ": gate has dtype ", dtype_name(gate.dtype),
               " but expected a float dtype");
  expect_defined(gate, op, "gate");
  expect_like(up, gate, op, "up");
  expect_like(dout, gate, op, "dout");
  expect_like(dgate, gate, op, "dgate");
  expect_like(dup, gate, op, "dup");
  BEAVER_CHECK(dgate.data != dup.data || dgate.numel() == 0, op,
               ": dgate and dup must be different tensors");
  expect_on(ctx, {&gate, &up, &dout, &dgate, &dup}, op);
  BEAVER_DISPATCH(ctx, swiglu_bwd, ctx, gate, up, dout, dgate, dup);
}

namespace cpu {
namespace {

BEAVER_CPU_CLONES void swiglu_fwd_part(const float* g, const float* u, float* o, int64_t begin,
                                       int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float gi = g[i], ui = u[i];
    o[i] = gi / (1.0f + exp_f32(-gi)) * ui;
  }
}

BEAVER_CPU_CLONES void swiglu_bwd_part(const float* g, const float* u, const float* d, float* dg,
                                       float* du, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float gi = g[i], ui = u[i], di = d[i];
    const float s = 1.0f / (1.0f + exp_f32(-gi));
    dg[i] = di * ui * s * (1.0f + gi * (1.0f - s));
    du[i] = di * gi * s;
  }
}

}  // namespace

void swiglu_fwd(Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& out) {
  expect_dtype(gate, DType::F32, "swiglu_fwd (cpu)", "gate");
  const float* g = gate.ptr<float>();
  const float* u = up.ptr<float>();
  float* o = out.ptr<float>();
  const int64_t n = gate.numel();
  parallel_range(ctx.threads(), n, n > 32768, [&](int64_t part_begin, int64_t part_end) {
    swiglu_fwd_part(g, u, o, part_begin, part_end);
  });
}

void swiglu_bwd(Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& dout,
                const Tensor& dgate, const Tensor& dup) {
  expect_dtype(gate, DType::F32, "swiglu_bwd (cpu)", "gate");
  const float* g = gate.ptr<float>();
  const float* u = up.ptr<float>();
  const float* d = dout.ptr<float>();
  float* dg = dgate.ptr<float>();
  float* du = dup.ptr<float>();
  const int64_t n = gate.numel();
  parallel_range(ctx.threads(), n, n > 32768, [&](int64_t part_begin, int64_t part_end) {
    swiglu_bwd_part(g, u, d, dg, du, part_begin, part_end);
  });
}

}  // namespace cpu
}  // namespace beaver::ops
