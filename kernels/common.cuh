// Device-side helpers shared by the CUDA kernels in kernels/*.cu: dtype conversion to and from
// fp32, 16-byte vector loads and stores, fixed-order block reductions, and launch helpers.
// Everything here is header-only and internal to the kernels (not part of the public API).
//
// Vector width: a "pack" of N elements is read with as many 16-byte (or 8/4-byte) accesses as
// it spans; callers pick N = 16 / sizeof(T) (or N = 4 for mixed f32/16-bit streams) and only
// take the vector path when every pointer is suitably aligned and the length divides, falling
// back to N = 1 otherwise (tensors may be views at arbitrary element offsets).
// Reductions use warp shuffles in a fixed butterfly then warp partials summed by one thread in
// warp order: the result depends only on the block size, never on scheduling.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "csrc/context.h"
#include "csrc/cuda_check.h"
#include "csrc/tensor.h"

namespace beaver::ops::cuda::detail {

using bf16_t = __nv_bfloat16;
using f16_t = __half;

inline cudaStream_t stream_of(const Context& ctx) {
  return static_cast<cudaStream_t>(ctx.stream());
}

inline int sm_count(const Context& ctx) {
  int n = 0;
  BEAVER_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount,
                                           ctx.device_index()));
  return n > 0 ? n : 1;
}

// Blocks for a grid-stride loop over `work` items with `threads` per block: enough to fill the
// chip several times over, never more than the work needs.
inline unsigned grid_for(const Context& ctx, int64_t work, int threads, int per_sm = 8) {
  const int64_t need = (work + threads - 1) / threads;
  const int64_t cap = int64_t(sm_count(ctx)) * per_sm;
  const int64_t g = need < cap ? need : cap;
  return unsigned(g > 0 ? g : 1);
}

inline bool aligned(const void* p, size_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) % bytes) == 0;
}

// Rounds `bytes` up to a multiple of 256 (sub-buffers carved from one scratch allocation).
constexpr size_t round256(size_t bytes) { return (bytes + 255) / 256 * 256; }

// ---- conversions -----------------------------------------------------------------------------
__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(bf16_t x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f(f16_t x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16_t from_f<bf16_t>(float x) {
  return __float2bfloat16_rn(x);
}
template <> __device__ __forceinline__ f16_t from_f<f16_t>(float x) { return __float2half_rn(x); }

// ---- packed loads and stores -----------------------------------------------------------------
// The widest access (16, 8 or 4 bytes) that evenly covers N elements of T.
template <typename T, int N>
struct PackWord {
  static constexpr int kBytes = int(sizeof(T)) * N;
  static constexpr int kWord = kBytes % 16 == 0 ? 16 : kBytes % 8 == 0 ? 8 : kBytes % 4 == 0 ? 4 : 0;
};
template <int B> struct WordType;
template <> struct WordType<16> { using type = uint4; };
template <> struct WordType<8> { using type = uint2; };
template <> struct WordType<4> { using type = uint32_t; };

// Loads N elements at p (aligned to the pack word) as fp32.
template <typename T, int N>
__device__ __forceinline__ void load_pack(const T* p, float (&f)[N]) {
  constexpr int kWord = PackWord<T, N>::kWord;
  if constexpr (N > 1 && kWord > 0) {
    using W = typename WordType<kWord>::type;
    constexpr int kWords = PackWord<T, N>::kBytes / kWord;
    constexpr int kPer = kWord / int(sizeof(T));
#pragma unroll
    for (int w = 0; w < kWords; ++w) {
      const W word = reinterpret_cast<const W*>(p)[w];
      const T* e = reinterpret_cast<const T*>(&word);
#pragma unroll
      for (int j = 0; j < kPer; ++j) f[w * kPer + j] = to_f(e[j]);
    }
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) f[j] = to_f(p[j]);
  }
}

// Adds the N elements at p (aligned to the pack word), as fp32, to acc: acc[j] += p[j].
template <typename T, int N>
__device__ __forceinline__ void add_pack(const T* p, float (&acc)[N]) {
  float f[N];
  load_pack<T, N>(p, f);
#pragma unroll
  for (int j = 0; j < N; ++j) acc[j] += f[j];
}

// Two fp32 values as one 32-bit word of T (a in the low half for 16-bit types).
template <typename T> __device__ __forceinline__ uint32_t word_of(float a, float b);
template <> __device__ __forceinline__ uint32_t word_of<bf16_t>(float a, float b) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
  return uint32_t(__bfloat16_as_ushort(v.x)) | (uint32_t(__bfloat16_as_ushort(v.y)) << 16);
}
template <> __device__ __forceinline__ uint32_t word_of<f16_t>(float a, float b) {
  const __half2 v = __floats2half2_rn(a, b);
  return uint32_t(__half_as_ushort(v.x)) | (uint32_t(__half_as_ushort(v.y)) << 16);
}

// Stores N fp32 values at p as T (rounded to nearest-even for 16-bit types). The words are
// assembled in registers (no byte-wise writes into a local word), so a 16-byte pack is one
// 16-byte store.
template <typename T, int N>
__device__ __forceinline__ void store_pack(T* p, const float (&f)[N]) {
  constexpr int kWord = PackWord<T, N>::kWord;
  if constexpr (N > 1 && kWord > 0) {
    constexpr int kU = PackWord<T, N>::kBytes / 4;  // 32-bit words in the pack
    uint32_t u[kU];
#pragma unroll
    for (int w = 0; w < kU; ++w) {
      if constexpr (sizeof(T) == 4)
        u[w] = __float_as_uint(f[w]);
      else
        u[w] = word_of<T>(f[2 * w], f[2 * w + 1]);
    }
    if constexpr (kWord == 16) {
#pragma unroll
      for (int w = 0; w < kU / 4; ++w)
        reinterpret_cast<uint4*>(p)[w] = make_uint4(u[4 * w], u[4 * w + 1], u[4 * w + 2], u[4 * w + 3]);
    } else if constexpr (kWord == 8) {
#pragma unroll
      for (int w = 0; w < kU / 2; ++w)
        reinterpret_cast<uint2*>(p)[w] = make_uint2(u[2 * w], u[2 * w + 1]);
    } else {
#pragma unroll
      for (int w = 0; w < kU; ++w) reinterpret_cast<uint32_t*>(p)[w] = u[w];
    }
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) p[j] = from_f<T>(f[j]);
  }
}

// ---- fixed-order reductions ------------------------------------------------------------------
template <typename A>
__device__ __forceinline__ A warp_sum(A x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024). Every thread gets the result.
// `shared` holds 33 values of A. Deterministic: the order depends only on blockDim.x.
template <typename A>
__device__ __forceinline__ A block_sum(A x, A* shared) {
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  const int warps = int(blockDim.x) >> 5;
  x = warp_sum(x);
  __syncthreads();  // `shared` may still be read from a previous call
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  if (threadIdx.x == 0) {
    A s = shared[0];
    for (int w = 1; w < warps; ++w) s += shared[w];
    shared[32] = s;
  }
  __syncthreads();
  return shared[32];
}

// Threads per block for a row of `vecs` packs: a multiple of 32 in [32, max_threads].
inline int row_threads(int64_t vecs, int max_threads) {
  int64_t t = (vecs + 31) / 32 * 32;
  if (t > max_threads) t = max_threads;
  if (t < 32) t = 32;
  return int(t);
}

// ---- elementwise launches ----------------------------------------------------------------------
// A functor F with `template <int N> __device__ void apply(int64_t i) const` handles elements
// [i, i + N). The kernel walks packs of N with a grid-stride loop, then the n % N tail with N = 1.
template <int N, typename F>
__global__ void elementwise_kernel(int64_t n, F f) {
  const int64_t packs = n / N;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t p = tid; p < packs; p += stride) f.template apply<N>(p * N);
  for (int64_t i = packs * N + tid; i < n; i += stride) f.template apply<1>(i);
}

// Runs F over n elements: packs of N when `vector` (all pointers aligned for it), else one by one.
template <int N, typename F>
void launch_elementwise(const Context& ctx, int64_t n, bool vector, const F& f) {
  if (n <= 0) return;
  constexpr int kThreads = 256;
  if (vector) {
    elementwise_kernel<N, F>
        <<<grid_for(ctx, n / N + 1, kThreads), kThreads, 0, stream_of(ctx)>>>(n, f);
  } else {
    elementwise_kernel<1, F><<<grid_for(ctx, n, kThreads), kThreads, 0, stream_of(ctx)>>>(n, f);
  }
  BEAVER_CUDA_LAUNCH_CHECK();
}

// ---- host-side dtype dispatch ------------------------------------------------------------------
template <typename T> struct Tag { using type = T; };

// Calls f(Tag<T>{}) with the device type for a float dtype: F32 and BF16, plus F16 when
// kAllowF16 (a template flag, so that unsupported types are never instantiated); otherwise
// throws naming the op and the argument.
template <bool kAllowF16 = false, typename F>
void with_float(DType d, const char* op, const char* arg, F&& f) {
  if (d == DType::F32) return f(Tag<float>{});
  if (d == DType::BF16) return f(Tag<bf16_t>{});
  if constexpr (kAllowF16) {
    if (d == DType::F16) return f(Tag<f16_t>{});
  }
  BEAVER_FAIL(op, ": ", arg, " has dtype ", dtype_name(d), ", the CUDA backend supports f32 and bf16",
              kAllowF16 ? " and f16" : "");
}

}  // namespace beaver::ops::cuda::detail
