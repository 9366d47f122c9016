// CUDA backend of the fused log-softmax + gather and token cross-entropy (csrc/ops/logprob.h).
// Layout: logits [T, V] (rows = all leading dims; f32 or bf16), targets i32 [T], out / lse /
// dout f32 [T], dlogits [T, V] of the logits' dtype (it may alias logits).
// Forward: one block (512 threads) per row streams the row once with 16-byte packs (8 bf16 or
// 4 f32) and keeps an online (max, sum of exp) per thread: a pack's max rescales the running
// sum at most once per pack, then one expf per element. The per-thread pairs are merged by a
// fixed warp butterfly and then in warp order, so lse is bitwise reproducible. Thread 0 gathers
// logits[t, target]. Ignored rows (target == ignore_index, or out of [0, V)) skip the row
// entirely and write out = 0, lse = 0. Sized for V up to 2^31 - 1 (128k+ vocabularies fit).
// Backward: one pass per row, dlogits = sign * dout * (1[v == target] - exp(logits - lse)),
// reading each pack before writing it (in-place safe); ignored rows get a zero row.
// Precision: fp32 throughout (accurate expf/logf); bf16 logits are widened on load and
// dlogits rounded once on store.
#include <cmath>

#include "csrc/ops/logprob.h"
#include "kernels/common.cuh"

namespace beaver::ops::cuda {

using namespace detail;

namespace {

constexpr int kThreads = 512;

struct MaxSum {
  float m, s;
};

// Merges two (max, sum of exp(x - max)) pairs; -inf maxima (no finite element yet) are neutral.
__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  if (b.m > a.m) {
    const MaxSum t = a;
    a = b;
    b = t;
  }
  if (b.m == -INFINITY) return a;
  return {a.m, a.s + b.s * expf(b.m - a.m)};
}

__device__ __forceinline__ MaxSum block_merge(MaxSum v, MaxSum* shared) {
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    MaxSum other{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
    v = merge(v, other);
  }
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    MaxSum a = shared[0];
    for (int w = 1; w < int(blockDim.x) >> 5; ++w) a = merge(a, shared[w]);
    shared[32] = a;
  }
  __syncthreads();
  return shared[32];
}

__device__ __forceinline__ bool ignored(int tgt, int64_t V, int ignore_index) {
  return tgt == ignore_index || tgt < 0 || int64_t(tgt) >= V;
}

template <typename T, int P>
__global__ void __launch_bounds__(kThreads)
    logprob_fwd_kernel(const T* __restrict__ logits, const int32_t* __restrict__ targets,
                       float* __restrict__ out, float* __restrict__ lse, int64_t V,
                       int ignore_index, float sign) {
  __shared__ MaxSum shared[33];
  const int64_t r = blockIdx.x;
  const int tgt = targets[r];
  if (ignored(tgt, V, ignore_index)) {
    if (threadIdx.x == 0) {
      out[r] = 0.0f;
      lse[r] = 0.0f;
    }
    return;
  }
  const T* row = logits + r * V;
  const int64_t packs = V / P;
  MaxSum acc{-INFINITY, 0.0f};
#pragma unroll 4
  for (int64_t c = threadIdx.x; c < packs; c += blockDim.x) {
    float x[P];
    load_pack<T, P>(row + c * P, x);
    float pm = x[0];
#pragma unroll
    for (int j = 1; j < P; ++j) pm = fmaxf(pm, x[j]);
    if (pm > acc.m) {
      acc.s *= expf(acc.m - pm);
      acc.m = pm;
    }
    if (acc.m != -INFINITY) {
#pragma unroll
      for (int j = 0; j < P; ++j) acc.s += expf(x[j] - acc.m);
    }
  }
  const MaxSum tot = block_merge(acc, shared);
  if (threadIdx.x == 0) {
    const float l = tot.m + logf(tot.s);
    lse[r] = l;
    out[r] = sign * (to_f(row[tgt]) - l);
  }
}

template <typename T, int P>
__global__ void __launch_bounds__(kThreads)
    logprob_bwd_kernel(const T* logits, const int32_t* __restrict__ targets,
                       const float* __restrict__ lse, const float* __restrict__ dout, T* dlogits,
                       int64_t V, int ignore_index, float sign) {
  const int64_t r = blockIdx.x;
  const int tgt = targets[r];
  const bool skip = ignored(tgt, V, ignore_index);
  const float l = skip ? 0.0f : lse[r];
  const float g = skip ? 0.0f : sign * dout[r];
  const T* row = logits + r * V;
  T* drow = dlogits + r * V;
  const int64_t packs = V / P;
#pragma unroll 2
  for (int64_t c = threadIdx.x; c < packs; c += blockDim.x) {
    float x[P];
    if (skip) {
#pragma unroll
      for (int j = 0; j < P; ++j) x[j] = 0.0f;
    } else {
      load_pack<T, P>(row + c * P, x);
#pragma unroll
      for (int j = 0; j < P; ++j) {
        const int64_t v = c * P + j;
        x[j] = g * ((v == tgt ? 1.0f : 0.0f) - expf(x[j] - l));
      }
    }
    store_pack<T, P>(drow + c * P, x);
  }
}

void check_args(const char* op, const Tensor& logits, const Tensor& targets, int64_t& T,
                int64_t& V) {
  BEAVER_CHECK(logits.rank() >= 1, op, ": logits must have at least one dimension, got ",
               logits.str());
  V = logits.size(-1);
  BEAVER_CHECK(V > 0, op, ": empty vocabulary in logits ", logits.str());
  T = logits.numel() / V;
  BEAVER_CHECK(targets.dtype == DType::I32 && targets.numel() == T, op, ": targets ",
               targets.str(), " must be i32 [", T, "]");
  BEAVER_CHECK(T < (int64_t(1) << 31), op, ": ", T, " rows exceed one launch");
}

void check_f32(const char* op, const char* name, const Tensor& t, int64_t T) {
  BEAVER_CHECK(t.dtype == DType::F32 && t.numel() == T, op, ": ", name, " ", t.str(),
               " must be f32 [", T, "]");
}

}  // namespace

void logprob_fwd(Context& ctx, const Tensor& logits, const Tensor& targets, const Tensor& out,
                 const Tensor& lse, int ignore_index, float sign) {
  constexpr const char* op = "logprob_fwd";
  int64_t T = 0, V = 0;
  check_args(op, logits, targets, T, V);
  check_f32(op, "out", out, T);
  check_f32(op, "lse", lse, T);
  if (T == 0) return;
  with_float(logits.dtype, op, "logits", [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    constexpr int kP = 16 / int(sizeof(T_));
    const bool vec = V % kP == 0 && aligned(logits.data, 16);
    auto launch = [&](auto kernel) {
      kernel<<<unsigned(T), kThreads, 0, stream_of(ctx)>>>(
          static_cast<const T_*>(logits.data), targets.ptr<int32_t>(), out.ptr<float>(),
          lse.ptr<float>(), V, ignore_index, sign);
      BEAVER_CUDA_LAUNCH_CHECK();
    };
    if (vec)
      launch(logprob_fwd_kernel<T_, kP>);
    else
      launch(logprob_fwd_kernel<T_, 1>);
  });
}

void logprob_bwd(Context& ctx, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                 const Tensor& dout, const Tensor& dlogits, int ignore_index, float sign) {
  constexpr const char* op = "logprob_bwd";
  int64_t T = 0, V = 0;
  check_args(op, logits, targets, T, V);
  check_f32(op, "lse", lse, T);
  check_f32(op, "dout", dout, T);
  BEAVER_CHECK(dlogits.dtype == logits.dtype && dlogits.numel() == logits.numel(), op,
               ": dlogits ", dlogits.str(), " must match logits ", logits.str());
  if (T == 0) return;
  with_float(logits.dtype, op, "logits", [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    constexpr int kP = 16 / int(sizeof(T_));
    const bool vec = V % kP == 0 && aligned(logits.data, 16) && aligned(dlogits.data, 16);
    auto launch = [&](auto kernel) {
      kernel<<<unsigned(T), kThreads, 0, stream_of(ctx)>>>(
          static_cast<const T_*>(logits.data), targets.ptr<int32_t>(), lse.ptr<float>(),
          dout.ptr<float>(), static_cast<T_*>(dlogits.data), V, ignore_index, sign);
      BEAVER_CUDA_LAUNCH_CHECK();
    };
    if (vec)
      launch(logprob_bwd_kernel<T_, kP>);
    else
      launch(logprob_bwd_kernel<T_, 1>);
  });
}

}  // namespace beaver::ops::cuda
