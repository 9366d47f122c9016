// Small elementwise ops: argument checks, dispatch, and the CPU twin (f32; convert between any
// float dtypes with the host conversions of csrc/dtype.h, so rounding is nearest-even).
#include "csrc/ops/elementwise.h"

#include <cstring>

#include "csrc/ops/cpu_threads.h"
#include "csrc/ops/dispatch.h"

namespace beaver::ops {
namespace {

void expect_float(const Tensor& t, std::string_view op, std::string_view name) {
  BEAVER_CHECK(is_float(t.dtype), op, ": ", name, " has dtype ", dtype_name(t.dtype),
               " but expected a float dtype");
  expect_defined(t, op, name);
}

}  // namespace

void convert(Context& ctx, const Tensor& src, const Tensor& dst) {
  constexpr std::string_view op = "convert";
  expect_float(src, op, "src");
  expect_float(dst, op, "dst");
  BEAVER_CHECK(src.numel() == dst.numel(), op, ": src ", src.str(), " and dst ", dst.str(),
               " differ in element count");
  expect_on(ctx, {&src, &dst}, op);
  BEAVER_DISPATCH(ctx, convert, ctx, src, dst);
}

void add(Context& ctx, const Tensor& a, const Tensor& b, const Tensor& out) {
  constexpr std::string_view op = "add";
  expect_float(a, op, "a");
  expect_shape(b, a.shape, op, "b");
  expect_dtype(b, a.dtype, op, "b");
  expect_defined(b, op, "b");
  expect_shape(out, a.shape, op, "out");
  expect_dtype(out, a.dtype, op, "out");
  expect_defined(out, op, "out");
  expect_on(ctx, {&a, &b, &out}, op);
  BEAVER_DISPATCH(ctx, add, ctx, a, b, out);
}

void axpy(Context& ctx, float alpha, const Tensor& x, const Tensor& y) {
  constexpr std::string_view op = "axpy";
  expect_float(x, op, "x");
  expect_shape(y, x.shape, op, "y");
  expect_dtype(y, x.dtype, op, "y");
  expect_defined(y, op, "y");
  expect_on(ctx, {&x, &y}, op);
  BEAVER_DISPATCH(ctx, axpy, ctx, alpha, x, y);
}

void scale(Context& ctx, const Tensor& x, float alpha) {
  constexpr std::string_view op = "scale";
  expect_float(x, op, "x");
  expect_on(ctx, {&x}, op);
  BEAVER_DISPATCH(ctx, scale, ctx, x, alpha);
}

void fill(Context& ctx, const Tensor& x, float value) {
  constexpr std::string_view op = "fill";
  expect_float(x, op, "x");
  expect_on(ctx, {&x}, op);
  BEAVER_DISPATCH(ctx, fill, ctx, x, value);
}

namespace cpu {
namespace {

constexpr int64_t kSerialBelow = 32768;  // elements: below this a thread team costs more

template <typename T>
float load(const void* p, int64_t i) {
  const T v = static_cast<const T*>(p)[i];
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return to_f32(v);
}

template <typename T>
void store(void* p, int64_t i, float v) {
  if constexpr (std::is_same_v<T, float>)
    static_cast<float*>(p)[i] = v;
  else if constexpr (std::is_same_v<T, bf16>)
    static_cast<bf16*>(p)[i] = to_bf16(v);
  else
    static_cast<f16*>(p)[i] = to_f16(v);
}

template <typename S, typename D>
void convert_loop(int threads, const void* src, void* dst, int64_t n) {
  parallel_range(threads, n, n > kSerialBelow, [&](int64_t part_begin, int64_t part_end) {
    for (int64_t i = part_begin; i < part_end; ++i) store<D>(dst, i, load<S>(src, i));
  });
}

template <typename S>
void convert_from(int threads, const void* src, DType dt, void* dst, int64_t n) {
  switch (dt) {
    case DType::F32: return convert_loop<S, float>(threads, src, dst, n);
    case DType::BF16: return convert_loop<S, bf16>(threads, src, dst, n);
    case DType::F16: return convert_loop<S, f16>(threads, src, dst, n);
    default: BEAVER_FAIL("convert (cpu): dst has non-float dtype ", dtype_name(dt));
  }
}

}  // namespace

void convert(Context& ctx, const Tensor& src, const Tensor& dst) {
  const int64_t n = src.numel();
  if (n == 0) return;
  if (src.dtype == dst.dtype) {  // same type: a copy (memmove: src and dst may overlap)
    std::memmove(dst.data, src.data, src.nbytes());
    return;
  }
  BEAVER_CHECK(src.data != dst.data, "convert (cpu): src and dst of different dtypes must not "
               "share memory");
  switch (src.dtype) {
    case DType::F32: return convert_from<float>(ctx.threads(), src.data, dst.dtype, dst.data, n);
    case DType::BF16: return convert_from<bf16>(ctx.threads(), src.data, dst.dtype, dst.data, n);
    case DType::F16: return convert_from<f16>(ctx.threads(), src.data, dst.dtype, dst.data, n);
    default: BEAVER_FAIL("convert (cpu): src has non-float dtype ", dtype_name(src.dtype));
  }
}

void add(Context& ctx, const Tensor& a, const Tensor& b, const Tensor& out) {
  expect_dtype(a, DType::F32, "add (cpu)", "a");
  const float* ap = a.ptr<float>();
  const float* bp = b.ptr<float>();
  float* op = out.ptr<float>();
  const int64_t n = a.numel();
  parallel_range(ctx.threads(), n, n > kSerialBelow, [&](int64_t part_begin, int64_t part_end) {
    for (int64_t i = part_begin; i < part_end; ++i) op[i] = ap[i] + bp[i];
  });
}

void axpy(Context& ctx, float alpha, const Tensor& x, const Tensor& y) {
  expect_dtype(x, DType::F32, "axpy (cpu)", "x");
  const float* xp = x.ptr<float>();
  float* yp = y.ptr<float>();
  const int64_t n = x.numel();
  parallel_range(ctx.threads(), n, n > kSerialBelow, [&](int64_t part_begin, int64_t part_end) {
    for (int64_t i = part_begin; i < part_end; ++i) yp[i] += alpha * xp[i];
  });
}

void scale(Context& ctx, const Tensor& x, float alpha) {
  expect_dtype(x, DType::F32, "scale (cpu)", "x");
  float* xp = x.ptr<float>();
  const int64_t n = x.numel();
  parallel_range(ctx.threads(), n, n > kSerialBelow, [&](int64_t part_begin, int64_t part_end) {
    for (int64_t i = part_begin; i < part_end; ++i) xp[i] *= alpha;
  });
}

void fill(Context& ctx, const Tensor& x, float value) {
  expect_dtype(x, DType::F32, "fill (cpu)", "x");
  float* xp = x.ptr<float>();
  const int64_t n = x.numel();
  parallel_range(ctx.threads(), n, n > kSerialBelow, [&](int64_t part_begin, int64_t part_end) {
    for (int64_t i = part_begin; i < part_end; ++i) xp[i] = value;
  });
}

}  // namespace cpu
}  // namespace beaver::ops
