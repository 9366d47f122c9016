// CUDA backend of the global gradient norm and clipping (csrc/ops/gradnorm.h).
// Layout: any number of gradient tensors (f32 or bf16, any shapes, treated as flat vectors);
// norm and coef are f32 [1] on the device.
// grad_norm: tensors are passed to the kernel by value, up to kMaxTensors per launch (no
// host-to-device copy, no host sync). Each launch has a fixed grid of kBlocks blocks; block b
// walks every tensor of the launch with the same grid-stride pattern (16-byte packs when the
// tensor is aligned, four packs per step with their loads in flight together, then its tail),
// accumulating g^2 in fp64 per thread (one accumulator per unrolled pack, added in order at the
// end), reduces the block in a fixed order and writes one fp64 partial to scratch slot (launch, b). A final single-block
// kernel sums all partials in slot order and writes sqrt. The grid size is a constant, so the
// result is bitwise reproducible on any device for the same inputs and tensor list.
// clip_coef: one thread, coef = min(1, max_norm / (norm + 1e-6)).
// scale_by: multi-tensor launches like grad_norm, each element *= coef[0] read on the device;
// bf16 grads are rounded once.
#include <algorithm>

#include "csrc/ops/gradnorm.h"
#include "kernels/common.cuh"

namespace beaver::ops::cuda {

using namespace detail;

namespace {

constexpr int kMaxTensors = 64;
// A fixed grid (the same on every device, for reproducibility) large enough to keep several
// blocks on every multiprocessor of a large card: 1024 blocks x 256 threads x kUnroll 16-byte
// loads in flight per thread.
constexpr int kBlocks = 1024;
constexpr int kThreads = 256;
constexpr int kUnroll = 4;

struct TensorList {
  const void* ptr[kMaxTensors];
  int64_t numel[kMaxTensors];
  uint8_t bf16[kMaxTensors];
  uint8_t vec[kMaxTensors];  // 16-byte aligned: use packs of 16 / sizeof(T)
  int count;
};

// Each thread takes the packs tid, tid + stride, ... of [begin, end); kUnroll of them per step
// with all loads issued before any arithmetic, each feeding its own fp64 accumulator (so the
// fp64 adds of one step are independent), the accumulators added in a fixed order at the end.
template <typename T, int P>
__device__ __forceinline__ double sumsq_range(const T* p, int64_t begin, int64_t end,
                                              int64_t stride) {
  double acc[kUnroll];
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) acc[u] = 0.0;
  int64_t i = begin;
  for (; i + (kUnroll - 1) * stride < end; i += kUnroll * stride) {
    float x[kUnroll][P];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) load_pack<T, P>(p + (i + u * stride) * P, x[u]);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int j = 0; j < P; ++j) acc[u] += double(x[u][j]) * double(x[u][j]);
  }
  for (; i < end; i += stride) {  // fewer than kUnroll packs left
    float x[P];
    load_pack<T, P>(p + i * P, x);
#pragma unroll
    for (int j = 0; j < P; ++j) acc[0] += double(x[j]) * double(x[j]);
  }
  double s = acc[0];
#pragma unroll
  for (int u = 1; u < kUnroll; ++u) s += acc[u];
  return s;
}

template <typename T>
__device__ __forceinline__ double sumsq_tensor(const T* p, int64_t n, bool vec, int64_t tid,
                                               int64_t stride) {
  constexpr int kP = 16 / int(sizeof(T));
  if (!vec) return sumsq_range<T, 1>(p, tid, n, stride);
  const int64_t packs = n / kP;
  double acc = sumsq_range<T, kP>(p, tid, packs, stride);
  for (int64_t i = packs * kP + tid; i < n; i += stride) {
    const float x = to_f(p[i]);
    acc += double(x) * double(x);
  }
  return acc;
}

__global__ void __launch_bounds__(kThreads) sumsq_kernel(TensorList list, double* partial) {
  __shared__ double red[33];
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  double acc = 0.0;
  for (int k = 0; k < list.count; ++k) {
    if (list.bf16[k])
      acc += sumsq_tensor(static_cast<const bf16_t*>(list.ptr[k]), list.numel[k], list.vec[k],
                          tid, stride);
    else
      acc += sumsq_tensor(static_cast<const float*>(list.ptr[k]), list.numel[k], list.vec[k],
                          tid, stride);
  }
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void __launch_bounds__(kThreads)
    finish_norm_kernel(const double* __restrict__ partial, int64_t count, float* norm) {
  __shared__ double red[33];
  // Fixed assignment: thread i sums slots i, i + blockDim, ... in order; then the fixed tree.
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) norm[0] = float(sqrt(acc));
}

__global__ void clip_coef_kernel(const float* __restrict__ norm, float max_norm, float* coef) {
  const float c = max_norm / (norm[0] + 1e-6f);
  coef[0] = c < 1.0f ? c : 1.0f;
}

template <typename T>
__device__ __forceinline__ void scale_tensor(T* p, int64_t n, bool vec, float s, int64_t tid,
                                             int64_t stride) {
  constexpr int kP = 16 / int(sizeof(T));
  int64_t begin = 0;
  if (vec) {
    const int64_t packs = n / kP;
    for (int64_t c = tid; c < packs; c += stride) {
      float x[kP];
      load_pack<T, kP>(p + c * kP, x);
#pragma unroll
      for (int j = 0; j < kP; ++j) x[j] *= s;
      store_pack<T, kP>(p + c * kP, x);
    }
    begin = packs * kP;
  }
  for (int64_t i = begin + tid; i < n; i += stride) p[i] = from_f<T>(to_f(p[i]) * s);
}

__global__ void __launch_bounds__(kThreads)
    scale_kernel(TensorList list, const float* __restrict__ coef) {
  const float s = coef[0];
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int k = 0; k < list.count; ++k) {
    if (list.bf16[k])
      scale_tensor(static_cast<bf16_t*>(const_cast<void*>(list.ptr[k])), list.numel[k],
                   list.vec[k], s, tid, stride);
    else
      scale_tensor(static_cast<float*>(const_cast<void*>(list.ptr[k])), list.numel[k],
                   list.vec[k], s, tid, stride);
  }
}

// Splits the tensor list into launches of at most kMaxTensors (empty tensors dropped).
std::vector<TensorList> make_lists(std::span<const Tensor> grads, const char* op) {
  std::vector<TensorList> lists;
  for (size_t i = 0; i < grads.size(); ++i) {
    const Tensor& g = grads[i];
    BEAVER_CHECK(g.dtype == DType::F32 || g.dtype == DType::BF16, op, ": grads[", i, "] ",
                 g.str(), " must be f32 or bf16 on CUDA");
    if (g.numel() == 0) continue;
    BEAVER_CHECK(g.data != nullptr, op, ": grads[", i, "] ", g.str(), " has no data");
    if (lists.empty() || lists.back().count == kMaxTensors) {
      lists.emplace_back();
      lists.back().count = 0;
    }
    TensorList& l = lists.back();
    l.ptr[l.count] = g.data;
    l.numel[l.count] = g.numel();
    l.bf16[l.count] = g.dtype == DType::BF16 ? 1 : 0;
    l.vec[l.count] = aligned(g.data, 16) ? 1 : 0;
    ++l.count;
  }
  return lists;
}

void check_scalar(const Tensor& t, const char* op, const char* name) {
  BEAVER_CHECK(t.dtype == DType::F32 && t.numel() == 1 && t.data != nullptr, op, ": ", name, " ",
               t.str(), " must be f32 [1]");
}

}  // namespace

void grad_norm(Context& ctx, std::span<const Tensor> grads, const Tensor& norm) {
  check_scalar(norm, "grad_norm", "norm");
  const std::vector<TensorList> lists = make_lists(grads, "grad_norm");
  const size_t slots = std::max<size_t>(1, lists.size() * kBlocks);
  auto* partial = static_cast<double*>(ctx.scratch(slots * sizeof(double)));
  for (size_t l = 0; l < lists.size(); ++l) {
    sumsq_kernel<<<kBlocks, kThreads, 0, stream_of(ctx)>>>(lists[l], partial + l * kBlocks);
    BEAVER_CUDA_LAUNCH_CHECK();
  }
  finish_norm_kernel<<<1, kThreads, 0, stream_of(ctx)>>>(
      partial, int64_t(lists.size()) * kBlocks, norm.ptr<float>());
  BEAVER_CUDA_LAUNCH_CHECK();
}

void clip_coef(Context& ctx, const Tensor& norm, float max_norm, const Tensor& coef) {
  check_scalar(norm, "clip_coef", "norm");
  check_scalar(coef, "clip_coef", "coef");
  clip_coef_kernel<<<1, 1, 0, stream_of(ctx)>>>(norm.ptr<float>(), max_norm, coef.ptr<float>());
  BEAVER_CUDA_LAUNCH_CHECK();
}

void scale_by(Context& ctx, std::span<const Tensor> grads, const Tensor& coef) {
  check_scalar(coef, "scale_by", "coef");
  for (const TensorList& l : make_lists(grads, "scale_by")) {
    int64_t total = 0;
    for (int k = 0; k < l.count; ++k) total += l.numel[k];
    scale_kernel<<<grid_for(ctx, total / 8 + 1, kThreads), kThreads, 0, stream_of(ctx)>>>(
        l, coef.ptr<float>());
    BEAVER_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace beaver::ops::cuda
