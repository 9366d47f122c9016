// Shared helpers for the GPU benchmark cases (bench/<family>/gpu.cu; included by CUDA sources
// only). What a GPU case reports, per call of the op:
//   time      manual time from CUDA events around a batch of calls (launch gaps amortised),
//             median over --benchmark_repetitions with --benchmark_report_aggregates_only
//   GB/s      minimum bytes moved (each input read once, each output written once) / time
//   TFLOP/s   for matrix products
//   %copy / %gemm   the rate as a share of the two ceilings measured in the same process:
//             a 1 GiB device-to-device copy (bytes read + written) and an 8192^3 bf16 GEMM
//             through cuBLASLt. Each binary also registers both ceilings as benchmarks
//             (BEAVER_GPU_CEILINGS()), so every table carries its own ceiling rows.
// Inputs are random (Philox on the device), never zeros, and rotated among enough copies to
// exceed the L2 cache several times over, so a case measures memory, not cache.
// Without a usable device every GPU case skips with "no CUDA device: <reason>" and the
// binary exits 0.
#pragma once

#include <benchmark/benchmark.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bench_util.h"
#include "csrc/context.h"
#include "csrc/cuda_check.h"
#include "csrc/device.h"
#include "csrc/ops/gemm.h"
#include "csrc/philox.h"

namespace beaver::bench {

// A CUDA context, or nothing after marking the benchmark skipped with the reason.
inline std::optional<Context> gpu_or_skip(benchmark::State& state) {
  std::string why;
  if (!cuda_available(&why)) {
    state.SkipWithError(("no CUDA device: " + why).c_str());
    return std::nullopt;
  }
  return Context::cuda();
}

inline cudaStream_t stream_of(const Context& ctx) {
  return static_cast<cudaStream_t>(ctx.stream());
}

// ---- random device data -----------------------------------------------------------------------
template <typename T>
__device__ __forceinline__ T bench_from_f(float x);
template <> __device__ __forceinline__ float bench_from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 bench_from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <> __device__ __forceinline__ __half bench_from_f<__half>(float x) {
  return __float2half_rn(x);
}

template <typename T>
__global__ void bench_random_kernel(T* p, int64_t n, uint64_t seed, float lo, float hi) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    p[i] = bench_from_f<T>(lo + (hi - lo) * philox_uniform(seed, 0xbe7c, uint64_t(i)));
}

template <typename I>
__global__ void bench_random_ids_kernel(I* p, int64_t n, uint64_t seed, uint32_t range) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    p[i] = I(philox_u32(seed, 0x1d5, uint64_t(i)) % range);
}

// Uniform values in [lo, hi) in any float dtype, generated on the device.
inline void random_fill(Context& ctx, const Tensor& t, uint64_t seed, float lo = -1.0f,
                        float hi = 1.0f) {
  const int64_t n = t.numel();
  if (n == 0) return;
  const unsigned grid = unsigned(std::min<int64_t>((n + 255) / 256, 4096));
  cudaStream_t s = stream_of(ctx);
  switch (t.dtype) {
    case DType::F32:
      bench_random_kernel<<<grid, 256, 0, s>>>(static_cast<float*>(t.data), n, seed, lo, hi);
      break;
    case DType::BF16:
      bench_random_kernel<<<grid, 256, 0, s>>>(static_cast<__nv_bfloat16*>(t.data), n, seed, lo,
                                               hi);
      break;
    case DType::F16:
      bench_random_kernel<<<grid, 256, 0, s>>>(static_cast<__half*>(t.data), n, seed, lo, hi);
      break;
    default: BEAVER_FAIL("random_fill: ", t.str(), " is not a float tensor");
  }
  BEAVER_CUDA_LAUNCH_CHECK();
}

inline OwnedTensor device_random(Context& ctx, DType d, Shape s, uint64_t seed,
                                 float lo = -1.0f, float hi = 1.0f) {
  OwnedTensor t(d, s, Device::CUDA);
  random_fill(ctx, t, seed, lo, hi);
  return t;
}

// Random ids in [0, range) (token ids, targets).
inline OwnedTensor device_ids(Context& ctx, int64_t n, uint32_t range, uint64_t seed) {
  OwnedTensor t(DType::I32, {n}, Device::CUDA);
  if (n > 0) {
    const unsigned grid = unsigned(std::min<int64_t>((n + 255) / 256, 4096));
    bench_random_ids_kernel<<<grid, 256, 0, stream_of(ctx)>>>(t.ptr<int32_t>(), n, seed, range);
    BEAVER_CUDA_LAUNCH_CHECK();
  }
  return t;
}

// How many input sets to rotate through so that they span at least 3x the L2 cache (1 for
// inputs that already do), capped at 8.
inline int rotation_count(const Context& ctx, double bytes_per_set) {
  int l2 = 0;
  BEAVER_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, ctx.device_index()));
  const double sets = 3.0 * double(l2) / std::max(bytes_per_set, 1.0);
  return std::clamp(int(sets) + 1, 1, 8);
}

// ---- timing --------------------------------------------------------------------------------------
// A pair of CUDA events on one stream (RAII).
class EventTimer {
 public:
  explicit EventTimer(cudaStream_t s) : stream_(s) {
    BEAVER_CUDA_CHECK(cudaEventCreate(&start_));
    BEAVER_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~EventTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start() { BEAVER_CUDA_CHECK(cudaEventRecord(start_, stream_)); }
  // Seconds since start(), waiting for the work in between.
  double stop() {
    BEAVER_CUDA_CHECK(cudaEventRecord(stop_, stream_));
    BEAVER_CUDA_CHECK(cudaEventSynchronize(stop_));
    float ms = 0.0f;
    BEAVER_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
    return double(ms) * 1e-3;
  }

 private:
  cudaStream_t stream_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

// Runs fn(call_index) `batch` times per benchmark iteration between two events and reports
// the time per call (register the case with ->UseManualTime()). Warms up first.
template <typename F>
void time_calls(benchmark::State& state, Context& ctx, int batch, F&& fn) {
  for (int i = 0; i < 2; ++i) fn(int64_t(i));
  ctx.synchronize();
  EventTimer timer(stream_of(ctx));
  int64_t call = 0;
  for (auto _ : state) {
    timer.start();
    for (int i = 0; i < batch; ++i) fn(call++);
    state.SetIterationTime(timer.stop() / batch);
  }
}

// Median seconds of `reps` timed calls of fn (for the ceilings below).
template <typename F>
double median_seconds(Context& ctx, int reps, F&& fn) {
  fn();
  ctx.synchronize();
  EventTimer timer(stream_of(ctx));
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    timer.start();
    fn();
    t.push_back(timer.stop());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// ---- ceilings ------------------------------------------------------------------------------------
constexpr size_t kCopyBytes = size_t(1) << 30;
constexpr int64_t kGemmSize = 8192;

inline double copy_seconds(Context& ctx, const Buffer& src, const Buffer& dst) {
  return median_seconds(ctx, 10, [&] {
    BEAVER_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), kCopyBytes,
                                      cudaMemcpyDeviceToDevice, stream_of(ctx)));
  });
}

struct Ceilings {
  double copy_gbps = 0.0;    // bytes read + written per second / 1e9
  double gemm_tflops = 0.0;  // bf16 in, bf16 out, fp32 accumulate
};

// Measured once per process on first use and constant afterwards, so that every case's % column
// refers to the same ceilings as the ceiling rows of the same run.
inline const Ceilings& ceilings() {
  static const Ceilings c = [] {
    Ceilings r;
    Context ctx = Context::cuda();
    {
      const Buffer src(kCopyBytes, Device::CUDA), dst(kCopyBytes, Device::CUDA);
      BEAVER_CUDA_CHECK(cudaMemsetAsync(src.data(), 0x5a, kCopyBytes, stream_of(ctx)));
      r.copy_gbps = 2.0 * double(kCopyBytes) / copy_seconds(ctx, src, dst) / 1e9;
    }
    const int64_t n = kGemmSize;
    const OwnedTensor a = device_random(ctx, DType::BF16, {n, n}, 1);
    const OwnedTensor b = device_random(ctx, DType::BF16, {n, n}, 2);
    const OwnedTensor out(DType::BF16, {n, n}, Device::CUDA);
    const double s = median_seconds(
        ctx, 10, [&] { ops::cuda::gemm(ctx, a, false, b, false, out, 1.0f, 0.0f); });
    r.gemm_tflops = 2.0 * double(n) * double(n) * double(n) / s / 1e12;
    return r;
  }();
  return c;
}

// Per-call counters: GB/s and % of the copy ceiling for `bytes` moved per call.
inline void report_bytes(benchmark::State& state, double bytes) {
  using benchmark::Counter;
  state.counters["GB/s"] = Counter(bytes / 1e9, Counter::kIsIterationInvariantRate);
  state.counters["%copy"] =
      Counter(100.0 * bytes / 1e9 / ceilings().copy_gbps, Counter::kIsIterationInvariantRate);
}

// Per-call counters: TFLOP/s and % of the GEMM ceiling for `flops` per call.
inline void report_flops(benchmark::State& state, double flops) {
  using benchmark::Counter;
  state.counters["TFLOP/s"] = Counter(flops / 1e12, Counter::kIsIterationInvariantRate);
  state.counters["%gemm"] =
      Counter(100.0 * flops / 1e12 / ceilings().gemm_tflops, Counter::kIsIterationInvariantRate);
}

inline void ceiling_copy(benchmark::State& state) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  const Buffer src(kCopyBytes, Device::CUDA), dst(kCopyBytes, Device::CUDA);
  BEAVER_CUDA_CHECK(cudaMemsetAsync(src.data(), 0x5a, kCopyBytes, stream_of(*ctx)));
  time_calls(state, *ctx, 2, [&](int64_t) {
    BEAVER_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), kCopyBytes,
                                      cudaMemcpyDeviceToDevice, stream_of(*ctx)));
  });
  report_bytes(state, 2.0 * double(kCopyBytes));
}

inline void ceiling_gemm(benchmark::State& state) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  const int64_t n = kGemmSize;
  const OwnedTensor a = device_random(*ctx, DType::BF16, {n, n}, 1);
  const OwnedTensor b = device_random(*ctx, DType::BF16, {n, n}, 2);
  const OwnedTensor out(DType::BF16, {n, n}, Device::CUDA);
  time_calls(state, *ctx, 2,
             [&](int64_t) { ops::cuda::gemm(*ctx, a, false, b, false, out, 1.0f, 0.0f); });
  report_flops(state, 2.0 * double(n) * double(n) * double(n));
}

}  // namespace beaver::bench

// Registers the two ceiling rows; use once per GPU bench source, before its own cases. GPU case
// names start with gpu_ so that scripts/gpu-check.sh can select them (--benchmark_filter=^gpu_).
#define BEAVER_GPU_CEILINGS()                                                              \
  BENCHMARK(::beaver::bench::ceiling_copy)->Name("gpu_ceiling/copy_d2d_1GiB")->UseManualTime() \
      ->Unit(benchmark::kMicrosecond);                                                     \
  BENCHMARK(::beaver::bench::ceiling_gemm)->Name("gpu_ceiling/gemm_bf16_8192")->UseManualTime() \
      ->Unit(benchmark::kMicrosecond)
