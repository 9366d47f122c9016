// CUDA backend of the SwiGLU gate (csrc/ops/swiglu.h).
// Layout: gate, up, out (and dout, dgate, dup) are [T, I] row-major and are treated as flat
// vectors of T*I elements; all share one dtype, f32 or bf16.
// Precision: loads widen to fp32, sigmoid uses the accurate expf, each output is rounded once.
// Access: packs of 8 elements (16-byte accesses for bf16) when every pointer is 16-byte aligned;
// one memory pass (fwd: 2 reads + 1 write, bwd: 3 reads + 2 writes per element).
// Determinism: elementwise, bitwise reproducible. dgate/dup may alias gate/up: every element is
// read into registers before the same thread writes it.
#include "csrc/ops/swiglu.h"
#include "kernels/common.cuh"

namespace beaver::ops::cuda {

using namespace detail;

namespace {

constexpr int kPack = 8;

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

template <typename T>
struct SwigluFwd {
  const T* gate;
  const T* up;
  T* out;
  template <int N>
  __device__ void apply(int64_t i) const {
    float g[N], u[N];
    load_pack<T, N>(gate + i, g);
    load_pack<T, N>(up + i, u);
#pragma unroll
    for (int j = 0; j < N; ++j) g[j] = g[j] * sigmoid(g[j]) * u[j];
    store_pack<T, N>(out + i, g);
  }
};

template <typename T>
struct SwigluBwd {
  const T* gate;
  const T* up;
  const T* dout;
  T* dgate;
  T* dup;
  template <int N>
  __device__ void apply(int64_t i) const {
    float g[N], u[N], d[N], dg[N], du[N];
    load_pack<T, N>(gate + i, g);
    load_pack<T, N>(up + i, u);
    load_pack<T, N>(dout + i, d);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float s = sigmoid(g[j]);
      dg[j] = d[j] * u[j] * s * (1.0f + g[j] * (1.0f - s));
      du[j] = d[j] * g[j] * s;
    }
    store_pack<T, N>(dgate + i, dg);
    store_pack<T, N>(dup + i, du);
  }
};

void expect_same(const Tensor& a, const Tensor& b, const char* op, const char* name) {
  BEAVER_CHECK(a.dtype == b.dtype && a.numel() == b.numel(), op, ": ", name, " ", b.str(),
               " must match gate ", a.str(), " in dtype and size");
}

}  // namespace

void swiglu_fwd(Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& out) {
  expect_same(gate, up, "swiglu_fwd", "up");
  expect_same(gate, out, "swiglu_fwd", "out");
  with_float(gate.dtype, "swiglu_fwd", "gate", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const bool vec = aligned(gate.data, 16) && aligned(up.data, 16) && aligned(out.data, 16);
    launch_elementwise<kPack>(ctx, gate.numel(), vec,
                              SwigluFwd<T>{static_cast<const T*>(gate.data),
                                           static_cast<const T*>(up.data),
                                           static_cast<T*>(out.data)});
  });
}

void swiglu_bwd(Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& dout,
                const Tensor& dgate, const Tensor& dup) {
  expect_same(gate, up, "swiglu_bwd", "up");
  expect_same(gate, dout, "swiglu_bwd", "dout");
  expect_same(gate, dgate, "swiglu_bwd", "dgate");
  expect_same(gate, dup, "swiglu_bwd", "dup");
  with_float(gate.dtype, "swiglu_bwd", "gate", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const bool vec = aligned(gate.data, 16) && aligned(up.data, 16) && aligned(dout.data, 16) &&
                     aligned(dgate.data, 16) && aligned(dup.data, 16);
    launch_elementwise<kPack>(ctx, gate.numel(), vec,
                              SwigluBwd<T>{static_cast<const T*>(gate.data),
                                           static_cast<const T*>(up.data),
                                           static_cast<const T*>(dout.data),
                                           static_cast<T*>(dgate.data), static_cast<T*>(dup.data)});
  });
}

}  // namespace beaver::ops::cuda
