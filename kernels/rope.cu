// CUDA backend of rotary position embedding, rotate-half layout, in place (csrc/ops/rope.h).
// Layout: x [T, n_heads, d] (f32 or bf16), positions i32 [T], inv_freq f32 [d/2] on the device.
// One block per token: the block first computes cos/sin of angle = float(pos) * inv_freq[i]
// for the d/2 frequencies into shared memory (once per token, reused by every head), then
// rotates all heads of that token: each thread takes a pack of P lanes i..i+P-1 of one head
// together with their partners i+d/2.. (P = 8 for bf16, 4 for f32 when d/2 is a multiple of P
// and x is 16-byte aligned; P = 1 otherwise).
// Precision: the angle is one fp32 multiply as in HF; cos/sin use the accurate sincosf (the
// fast intrinsics lose accuracy for the large angles of long positions); the rotation runs in
// fp32 and each element is rounded once.
// Determinism: elementwise per element, bitwise reproducible. inverse rotates by -angle.
#include "csrc/ops/rope.h"
#include "kernels/common.cuh"

namespace beaver::ops::cuda {

using namespace detail;

namespace {

template <typename T, int P>
__global__ void rope_kernel(T* x, const int32_t* __restrict__ positions,
                            const float* __restrict__ inv_freq, int n_heads, int half,
                            float sin_sign) {
  extern __shared__ float cs[];  // cos[half] then sin[half]
  const int64_t t = blockIdx.x;
  const float pos = float(positions[t]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    float s, c;
    sincosf(pos * inv_freq[i], &s, &c);
    cs[i] = c;
    cs[half + i] = sin_sign * s;
  }
  __syncthreads();
  const int packs_per_head = half / P;
  const int work = n_heads * packs_per_head;
  T* row = x + t * int64_t(n_heads) * (2 * half);
  for (int w = threadIdx.x; w < work; w += blockDim.x) {
    const int h = w / packs_per_head;
    const int i = (w - h * packs_per_head) * P;
    T* lo = row + int64_t(h) * (2 * half) + i;
    T* hi = lo + half;
    float a[P], b[P];
    load_pack<T, P>(lo, a);
    load_pack<T, P>(hi, b);
#pragma unroll
    for (int j = 0; j < P; ++j) {
      const float c = cs[i + j], s = cs[half + i + j];
      const float ra = a[j] * c - b[j] * s;
      const float rb = b[j] * c + a[j] * s;
      a[j] = ra;
      b[j] = rb;
    }
    store_pack<T, P>(lo, a);
    store_pack<T, P>(hi, b);
  }
}

}  // namespace

void rope_apply(Context& ctx, const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
                bool inverse) {
  BEAVER_CHECK(x.rank() == 3, "rope_apply: x must be [T, n_heads, head_dim], got ", x.str());
  const int64_t T = x.size(0);
  const int64_t n_heads = x.size(1), d = x.size(2);
  BEAVER_CHECK(d % 2 == 0, "rope_apply: head_dim ", d, " must be even");
  BEAVER_CHECK(positions.dtype == DType::I32 && positions.numel() == T, "rope_apply: positions ",
               positions.str(), " must be i32 [", T, "]");
  BEAVER_CHECK(inv_freq.dtype == DType::F32 && inv_freq.numel() == d / 2, "rope_apply: inv_freq ",
               inv_freq.str(), " must be f32 [", d / 2, "]");
  BEAVER_CHECK(n_heads * d <= (int64_t(1) << 30), "rope_apply: ", n_heads, " heads of ", d,
               " lanes are too many for one token's block");
  if (T == 0 || n_heads == 0 || d == 0) return;
  const int half = int(d / 2);
  const size_t smem = size_t(d) * sizeof(float);
  BEAVER_CHECK(smem <= 48 * 1024, "rope_apply: head_dim ", d, " is too large (max 12288)");
  const float sin_sign = inverse ? -1.0f : 1.0f;
  with_float(x.dtype, "rope_apply", "x", [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    constexpr int kP = 16 / int(sizeof(T_));
    const bool vec = half % kP == 0 && aligned(x.data, 16);
    const int64_t work = n_heads * (vec ? half / kP : half);
    const int threads = row_threads(work, 256);
    auto* xp = static_cast<T_*>(x.data);
    const auto* pp = positions.ptr<int32_t>();
    const auto* fp = inv_freq.ptr<float>();
    if (vec)
      rope_kernel<T_, kP><<<unsigned(T), threads, smem, stream_of(ctx)>>>(
          xp, pp, fp, int(n_heads), half, sin_sign);
    else
      rope_kernel<T_, 1><<<unsigned(T), threads, smem, stream_of(ctx)>>>(
          xp, pp, fp, int(n_heads), half, sin_sign);
    BEAVER_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace beaver::ops::cuda
