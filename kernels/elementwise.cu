// CUDA backend of the small elementwise ops (csrc/ops/elementwise.h): convert, add, axpy,
// scale, fill.
// Layout: flat over numel (tensors are dense), so the shapes only need equal element counts
// (the public functions check them).
// Precision: every element is computed in fp32 and rounded once on store (nearest-even for
// bf16/f16). convert handles any pair of f32/bf16/f16; add/axpy/scale/fill take f32 or bf16
// (axpy's x and y may differ in dtype).
// Access: packs of 8 elements (16-byte loads/stores for 16-bit types, two for f32) when every
// pointer is 16-byte aligned, else one element per access; a grid-stride loop fills the chip.
// Determinism: purely elementwise, so results are bitwise reproducible. Aliasing (out == a or b,
// convert in place is not allowed) is safe because each element is read before it is written
// by the same thread.
#include "csrc/ops/elementwise.h"
#include "kernels/common.cuh"

namespace beaver::ops::cuda {

using namespace detail;

namespace {

constexpr int kPack = 8;

template <typename S, typename D>
struct ConvertOp {
  const S* src;
  D* dst;
  template <int N>
  __device__ void apply(int64_t i) const {
    float f[N];
    load_pack<S, N>(src + i, f);
    store_pack<D, N>(dst + i, f);
  }
};

template <typename T>
struct AddOp {
  const T* a;
  const T* b;
  T* out;
  template <int N>
  __device__ void apply(int64_t i) const {
    float x[N];
    load_pack<T, N>(a + i, x);
    add_pack<T, N>(b + i, x);
    store_pack<T, N>(out + i, x);
  }
};

template <typename TX, typename TY>
struct AxpyOp {
  float alpha;
  const TX* x;
  TY* y;
  template <int N>
  __device__ void apply(int64_t i) const {
    float xv[N], yv[N];
    load_pack<TX, N>(x + i, xv);
    load_pack<TY, N>(y + i, yv);
#pragma unroll
    for (int j = 0; j < N; ++j) yv[j] = fmaf(alpha, xv[j], yv[j]);
    store_pack<TY, N>(y + i, yv);
  }
};

template <typename T>
struct ScaleOp {
  float alpha;
  T* x;
  template <int N>
  __device__ void apply(int64_t i) const {
    float v[N];
    load_pack<T, N>(x + i, v);
#pragma unroll
    for (int j = 0; j < N; ++j) v[j] *= alpha;
    store_pack<T, N>(x + i, v);
  }
};

template <typename T>
struct FillOp {
  float value;
  T* x;
  template <int N>
  __device__ void apply(int64_t i) const {
    float v[N];
#pragma unroll
    for (int j = 0; j < N; ++j) v[j] = value;
    store_pack<T, N>(x + i, v);
  }
};

bool all_aligned(std::initializer_list<const void*> ps) {
  for (const void* p : ps)
    if (!aligned(p, 16)) return false;
  return true;
}

}  // namespace

void convert(Context& ctx, const Tensor& src, const Tensor& dst) {
  BEAVER_CHECK(src.numel() == dst.numel(), "convert: src ", src.str(), " and dst ", dst.str(),
               " differ in element count");
  if (src.dtype == dst.dtype) {
    if (src.data != dst.data && src.nbytes() > 0)
      BEAVER_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, src.nbytes(),
                                        cudaMemcpyDeviceToDevice, stream_of(ctx)));
    return;
  }
  with_float<true>(src.dtype, "convert", "src", [&](auto s) {
    using S = typename decltype(s)::type;
    with_float<true>(dst.dtype, "convert", "dst", [&](auto d) {
      using D = typename decltype(d)::type;
      launch_elementwise<kPack>(ctx, src.numel(), all_aligned({src.data, dst.data}),
                                ConvertOp<S, D>{static_cast<const S*>(src.data),
                                                static_cast<D*>(dst.data)});
    });
  });
}

void add(Context& ctx, const Tensor& a, const Tensor& b, const Tensor& out) {
  BEAVER_CHECK(a.dtype == b.dtype && a.dtype == out.dtype, "add: a ", a.str(), ", b ", b.str(),
               " and out ", out.str(), " must share one dtype");
  BEAVER_CHECK(a.numel() == b.numel() && a.numel() == out.numel(), "add: a ", a.str(), ", b ",
               b.str(), " and out ", out.str(), " differ in element count");
  with_float(a.dtype, "add", "a", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_elementwise<kPack>(ctx, a.numel(), all_aligned({a.data, b.data, out.data}),
                              AddOp<T>{static_cast<const T*>(a.data), static_cast<const T*>(b.data),
                                       static_cast<T*>(out.data)});
  });
}

void axpy(Context& ctx, float alpha, const Tensor& x, const Tensor& y) {
  BEAVER_CHECK(x.numel() == y.numel(), "axpy: x ", x.str(), " and y ", y.str(),
               " differ in element count");
  with_float(x.dtype, "axpy", "x", [&](auto tx) {
    using TX = typename decltype(tx)::type;
    with_float(y.dtype, "axpy", "y", [&](auto ty) {
      using TY = typename decltype(ty)::type;
      launch_elementwise<kPack>(ctx, x.numel(), all_aligned({x.data, y.data}),
                                AxpyOp<TX, TY>{alpha, static_cast<const TX*>(x.data),
                                               static_cast<TY*>(y.data)});
    });
  });
}

void scale(Context& ctx, const Tensor& x, float alpha) {
  with_float(x.dtype, "scale", "x", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_elementwise<kPack>(ctx, x.numel(), all_aligned({x.data}),
                              ScaleOp<T>{alpha, static_cast<T*>(x.data)});
  });
}

void fill(Context& ctx, const Tensor& x, float value) {
  with_float(x.dtype, "fill", "x", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_elementwise<kPack>(ctx, x.numel(), all_aligned({x.data}),
                              FillOp<T>{value, static_cast<T*>(x.data)});
  });
}

}  // namespace beaver::ops::cuda
