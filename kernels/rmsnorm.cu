// CUDA backend of RMSNorm fused with the residual add (csrc/ops/rmsnorm.h).
// Layout: rows of H along the last dimension (T = numel / H rows); x, residual, out,
// residual_out, dout, h, dresidual, dx and weight [H] share one dtype (f32 or bf16); rstd [T]
// and dweight [H] are f32.
// Forward: one block per row. Pass 1 reads x (+ residual) with 16-byte packs, writes
// residual_out, keeps h in shared memory as fp32 and sums h^2; pass 2 writes
// out = (h * rstd) * weight from shared memory, so every input byte is read once.
// Backward: each block takes a contiguous chunk of rows; every thread owns the same packs of
// columns for every row and keeps, in registers, hn = h*rstd and g = weight*dout of its packs
// between the two passes of a row (pass 1 sums hn*g over the row, pass 2 writes dx one 16-byte
// pack at a time) and its dweight partial dout*hn across the rows, written to scratch at the
// end. Rows wider than 4 x 512 packs (H > 16384 in bf16, 8192 in f32) use a shared-memory variant of the
// same kernel. A second kernel, H/32 blocks of 256 threads, sums the partials over blocks in a
// fixed order (lane-strided, then the lanes in order), so dweight is bitwise reproducible for a
// given device (the chunking depends only on T and the SM count: four blocks per SM).
// Precision: all arithmetic in fp32 (rstd = 1/sqrtf(mean + eps), IEEE sqrt and division);
// with a residual in bf16, h is rounded to bf16 before normalising, as residual_out stores it
// and as the backward will see it. Each output is rounded once (the reference rounds h*rstd
// to bf16 before the weight multiply; one rounding is slightly more accurate).
// Shared memory: forward 4*H bytes, the wide-row backward 12*H bytes; above 48 KB the kernel
// opts in to the device's larger limit, else a clear error.
#include "csrc/ops/rmsnorm.h"
#include "kernels/common.cuh"

namespace beaver::ops::cuda {

using namespace detail;

namespace {

constexpr int kThreads = 256;

template <typename T, int P>
__global__ void __launch_bounds__(kThreads)
    rmsnorm_fwd_kernel(const T* x, const T* residual, const T* __restrict__ weight, T* out,
                       T* residual_out, float* __restrict__ rstd, int H, float eps) {
  extern __shared__ float smem[];
  float* hrow = smem;        // [H]
  float* red = smem + H;     // [33]
  const int64_t r = blockIdx.x;
  const T* xr = x + r * H;
  const T* rr = residual ? residual + r * H : nullptr;
  T* ro = residual_out ? residual_out + r * H : nullptr;
  const int packs = H / P;
  float ss = 0.0f;
  for (int c = threadIdx.x; c < packs; c += blockDim.x) {
    float a[P];
    load_pack<T, P>(xr + c * P, a);
    if (rr) {
      float b[P];
      load_pack<T, P>(rr + c * P, b);
#pragma unroll
      for (int j = 0; j < P; ++j) a[j] = to_f(from_f<T>(a[j] + b[j]));  // h as stored
    }
    if (ro) store_pack<T, P>(ro + c * P, a);
#pragma unroll
    for (int j = 0; j < P; ++j) {
      hrow[c * P + j] = a[j];
      ss = fmaf(a[j], a[j], ss);
    }
  }
  ss = block_sum(ss, red);
  const float rs = 1.0f / sqrtf(ss / float(H) + eps);
  if (rstd && threadIdx.x == 0) rstd[r] = rs;
  T* outr = out + r * H;
  for (int c = threadIdx.x; c < packs; c += blockDim.x) {
    float w[P], o[P];
    load_pack<T, P>(weight + c * P, w);
#pragma unroll
    for (int j = 0; j < P; ++j) o[j] = (hrow[c * P + j] * rs) * w[j];
    store_pack<T, P>(outr + c * P, o);
  }
}

template <typename T, int P>
__global__ void __launch_bounds__(kThreads)
    rmsnorm_bwd_kernel(const T* dout, const T* h, const T* __restrict__ weight,
                       const float* __restrict__ rstd, const T* dresidual, T* dx,
                       float* __restrict__ partial, int H, int64_t rows, int64_t rows_per_block) {
  extern __shared__ float smem[];
  float* hn_row = smem;         // [H]
  float* g_row = smem + H;      // [H]
  float* dw = smem + 2 * H;     // [H], this block's dweight partial
  float* red = smem + 3 * H;    // [33]
  const int packs = H / P;
  for (int c = threadIdx.x; c < packs; c += blockDim.x)
#pragma unroll
    for (int j = 0; j < P; ++j) dw[c * P + j] = 0.0f;
  const int64_t r0 = int64_t(blockIdx.x) * rows_per_block;
  const int64_t r1 = r0 + rows_per_block < rows ? r0 + rows_per_block : rows;
  for (int64_t r = r0; r < r1; ++r) {
    const float rs = rstd[r];
    const T* dor = dout + r * H;
    const T* hr = h + r * H;
    float dot = 0.0f;
    for (int c = threadIdx.x; c < packs; c += blockDim.x) {
      float d[P], hv[P], w[P];
      load_pack<T, P>(dor + c * P, d);
      load_pack<T, P>(hr + c * P, hv);
      load_pack<T, P>(weight + c * P, w);
#pragma unroll
      for (int j = 0; j < P; ++j) {
        const float hn = hv[j] * rs, g = w[j] * d[j];
        hn_row[c * P + j] = hn;
        g_row[c * P + j] = g;
        dot = fmaf(hn, g, dot);
        dw[c * P + j] = fmaf(d[j], hn, dw[c * P + j]);
      }
    }
    const float mean = block_sum(dot, red) / float(H);
    const T* drr = dresidual ? dresidual + r * H : nullptr;
    T* dxr = dx + r * H;
    for (int c = threadIdx.x; c < packs; c += blockDim.x) {
      float o[P];
#pragma unroll
      for (int j = 0; j < P; ++j) o[j] = rs * (g_row[c * P + j] - hn_row[c * P + j] * mean);
      if (drr) add_pack<T, P>(drr + c * P, o);
      store_pack<T, P>(dxr + c * P, o);
    }
  }
  float* pb = partial + int64_t(blockIdx.x) * H;
  for (int c = threadIdx.x; c < packs; c += blockDim.x)
#pragma unroll
    for (int j = 0; j < P; ++j) pb[c * P + j] = dw[c * P + j];
}

// Backward with the row in registers: each thread owns R packs of P columns (the same columns for
// every row), keeps dout and h of its packs in registers between the two passes and its
// dweight partial in registers across rows, and stores dx one pack (16 bytes) at a time.
template <typename T, int P, int R>
__global__ void __launch_bounds__(512)
    rmsnorm_bwd_reg_kernel(const T* dout, const T* h, const T* __restrict__ weight,
                           const float* __restrict__ rstd, const T* dresidual, T* dx,
                           float* __restrict__ partial, int H, int64_t rows,
                           int64_t rows_per_block) {
  __shared__ float red[33];
  const int packs = H / P;
  float dw[R][P];
#pragma unroll
  for (int i = 0; i < R; ++i)
#pragma unroll
    for (int j = 0; j < P; ++j) dw[i][j] = 0.0f;
  const int64_t r0 = int64_t(blockIdx.x) * rows_per_block;
  const int64_t r1 = r0 + rows_per_block < rows ? r0 + rows_per_block : rows;
  for (int64_t r = r0; r < r1; ++r) {
    const float rs = rstd[r];
    const T* dor = dout + r * H;
    const T* hr = h + r * H;
    float d[R][P], hn[R][P];
    float dot = 0.0f;
#pragma unroll
    for (int i = 0; i < R; ++i) {
      const int c = int(threadIdx.x) + i * int(blockDim.x);
      if (c < packs) {
        float w[P];
        load_pack<T, P>(dor + c * P, d[i]);
        load_pack<T, P>(hr + c * P, hn[i]);
        load_pack<T, P>(weight + c * P, w);
#pragma unroll
        for (int j = 0; j < P; ++j) {
          hn[i][j] *= rs;
          dw[i][j] = fmaf(d[i][j], hn[i][j], dw[i][j]);
          d[i][j] *= w[j];  // from here on d holds g = weight * dout
          dot = fmaf(hn[i][j], d[i][j], dot);
        }
      }
    }
    const float mean = block_sum(dot, red) / float(H);
    const T* drr = dresidual ? dresidual + r * H : nullptr;
    T* dxr = dx + r * H;
#pragma unroll
    for (int i = 0; i < R; ++i) {
      const int c = int(threadIdx.x) + i * int(blockDim.x);
      if (c < packs) {
        float o[P];
#pragma unroll
        for (int j = 0; j < P; ++j) o[j] = rs * (d[i][j] - hn[i][j] * mean);
        if (drr) add_pack<T, P>(drr + c * P, o);
        store_pack<T, P>(dxr + c * P, o);
      }
    }
  }
  float* pb = partial + int64_t(blockIdx.x) * H;
#pragma unroll
  for (int i = 0; i < R; ++i) {
    const int c = int(threadIdx.x) + i * int(blockDim.x);
    if (c < packs) store_pack<float, P>(pb + c * P, dw[i]);
  }
}

// dweight[j] (+)= sum over blocks b of partial[b, j] in a fixed order: a block of
// kRedCols x kRedLanes threads takes kRedCols columns; lane l sums the partial rows b = l,
// l + kRedLanes, ... in increasing b, and the lanes' sums are added in lane order. H / kRedCols
// blocks (128 for H = 4096) share the reads, instead of H / 256 threads blocks walking all rows.
constexpr int kRedCols = 32, kRedLanes = 8;
__global__ void __launch_bounds__(kRedCols * kRedLanes)
    dweight_reduce_kernel(const float* __restrict__ partial, int64_t blocks, int H,
                          float* dweight, bool accumulate) {
  __shared__ float lane_sum[kRedLanes][kRedCols + 1];
  const int col = int(threadIdx.x) % kRedCols, lane = int(threadIdx.x) / kRedCols;
  const int j = int(blockIdx.x) * kRedCols + col;
  float s = 0.0f;
  if (j < H) {
#pragma unroll 4
    for (int64_t b = lane; b < blocks; b += kRedLanes) s += partial[b * H + j];
  }
  lane_sum[lane][col] = s;
  __syncthreads();
  if (lane == 0 && j < H) {
    float t = accumulate ? dweight[j] : 0.0f;
#pragma unroll
    for (int l = 0; l < kRedLanes; ++l) t += lane_sum[l][col];
    dweight[j] = t;
  }
}

// Raises the kernel's dynamic shared-memory limit when `bytes` exceeds the default 48 KB.
template <typename K>
void allow_smem(const Context& ctx, K kernel, size_t bytes, const char* op, int64_t H) {
  if (bytes <= 48 * 1024) return;
  int optin = 0;
  BEAVER_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                           ctx.device_index()));
  BEAVER_CHECK(bytes <= size_t(optin), op, ": hidden size ", H, " needs ", bytes,
               " bytes of shared memory per block, the device allows ", optin);
  BEAVER_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

bool aligned_all(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t && t->data && !aligned(t->data, 16)) return false;
  return true;
}

void expect_like(const Tensor& t, const Tensor& ref, const char* op, const char* name) {
  BEAVER_CHECK(t.dtype == ref.dtype && t.numel() == ref.numel(), op, ": ", name, " ", t.str(),
               " must match ", ref.str(), " in dtype and size");
}

}  // namespace

void rmsnorm_fwd(Context& ctx, const Tensor& x, const Tensor& residual, const Tensor& weight,
                 float eps, const Tensor& out, const Tensor& residual_out, const Tensor& rstd) {
  constexpr const char* op = "rmsnorm_fwd";
  BEAVER_CHECK(x.rank() >= 1, op, ": x must have at least one dimension, got ", x.str());
  const int64_t H = x.size(-1);
  BEAVER_CHECK(H > 0 && H <= (int64_t(1) << 24), op, ": hidden size ", H, " out of range");
  const int64_t T = x.numel() / H;
  BEAVER_CHECK(weight.numel() == H && weight.dtype == x.dtype, op, ": weight ", weight.str(),
               " must be [", H, "] of x's dtype");
  expect_like(out, x, op, "out");
  if (residual.data) expect_like(residual, x, op, "residual");
  if (residual_out.data) expect_like(residual_out, x, op, "residual_out");
  if (rstd.data)
    BEAVER_CHECK(rstd.dtype == DType::F32 && rstd.numel() == T, op, ": rstd ", rstd.str(),
                 " must be f32 [", T, "]");
  if (T == 0) return;
  with_float(x.dtype, op, "x", [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    constexpr int kP = 16 / int(sizeof(T_));
    const bool vec = H % kP == 0 && aligned_all({&x, &residual, &weight, &out, &residual_out});
    const size_t smem = size_t(H + 33) * sizeof(float);
    const int threads = row_threads(vec ? H / kP : H, kThreads);
    auto launch = [&](auto kernel) {
      allow_smem(ctx, kernel, smem, op, H);
      kernel<<<unsigned(T), threads, smem, stream_of(ctx)>>>(
          static_cast<const T_*>(x.data), static_cast<const T_*>(residual.data),
          static_cast<const T_*>(weight.data), static_cast<T_*>(out.data),
          static_cast<T_*>(residual_out.data), static_cast<float*>(rstd.data), int(H), eps);
      BEAVER_CUDA_LAUNCH_CHECK();
    };
    if (vec)
      launch(rmsnorm_fwd_kernel<T_, kP>);
    else
      launch(rmsnorm_fwd_kernel<T_, 1>);
  });
}

void rmsnorm_bwd(Context& ctx, const Tensor& dout, const Tensor& h, const Tensor& weight,
                 const Tensor& rstd, const Tensor& dresidual, const Tensor& dx,
                 const Tensor& dweight, bool accumulate_weight) {
  constexpr const char* op = "rmsnorm_bwd";
  BEAVER_CHECK(dout.rank() >= 1, op, ": dout must have at least one dimension, got ", dout.str());
  const int64_t H = dout.size(-1);
  BEAVER_CHECK(H > 0 && H <= (int64_t(1) << 24), op, ": hidden size ", H, " out of range");
  const int64_t T = dout.numel() / H;
  expect_like(h, dout, op, "h");
  expect_like(dx, dout, op, "dx");
  if (dresidual.data) expect_like(dresidual, dout, op, "dresidual");
  BEAVER_CHECK(weight.numel() == H && weight.dtype == dout.dtype, op, ": weight ", weight.str(),
               " must be [", H, "] of dout's dtype");
  BEAVER_CHECK(rstd.dtype == DType::F32 && rstd.numel() == T, op, ": rstd ", rstd.str(),
               " must be f32 [", T, "]");
  BEAVER_CHECK(dweight.dtype == DType::F32 && dweight.numel() == H, op, ": dweight ",
               dweight.str(), " must be f32 [", H, "]");
  if (T == 0) {
    if (!accumulate_weight)
      BEAVER_CUDA_CHECK(cudaMemsetAsync(dweight.data, 0, dweight.nbytes(), stream_of(ctx)));
    return;
  }
  // Four blocks per SM: enough rows in flight to hide the per-row reductions, few enough
  // partials to stay cheap.
  const int64_t blocks_wanted = std::min<int64_t>(T, 4 * int64_t(sm_count(ctx)));
  const int64_t rows_per_block = (T + blocks_wanted - 1) / blocks_wanted;
  const int64_t blocks = (T + rows_per_block - 1) / rows_per_block;
  auto* partial = static_cast<float*>(ctx.scratch(size_t(blocks * H) * sizeof(float)));
  with_float(dout.dtype, op, "dout", [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    constexpr int kP = 16 / int(sizeof(T_));
    const bool vec = H % kP == 0 && aligned_all({&dout, &h, &weight, &dresidual, &dx});
    const int p = vec ? kP : 1;
    const int64_t packs = H / p;
    const T_* dp = static_cast<const T_*>(dout.data);
    const T_* hp = static_cast<const T_*>(h.data);
    const T_* wp = static_cast<const T_*>(weight.data);
    const T_* rp = static_cast<const T_*>(dresidual.data);
    T_* xp = static_cast<T_*>(dx.data);
    // Registers: R packs per thread, 256 threads per block and more (up to 512, so that the
    // kernel keeps up to 128 registers per thread) only when the row needs them; above
    // 4 x 512 packs per row (8 x 512 single columns) the shared-memory kernel takes over.
    auto reg = [&](auto kernel, int r) {
      const int64_t threads64 = std::max<int64_t>(
          32, (std::max<int64_t>((packs + r - 1) / r, 1) + 31) / 32 * 32);
      const int threads = int(std::min<int64_t>(threads64, 512));
      kernel<<<unsigned(blocks), threads, 0, stream_of(ctx)>>>(
          dp, hp, wp, rstd.ptr<float>(), rp, xp, partial, int(H), T, rows_per_block);
      BEAVER_CUDA_LAUNCH_CHECK();
    };
    auto smem_path = [&](auto kernel) {
      const size_t smem = size_t(3 * H + 33) * sizeof(float);
      const int threads = row_threads(packs, kThreads);
      allow_smem(ctx, kernel, smem, op, H);
      kernel<<<unsigned(blocks), threads, smem, stream_of(ctx)>>>(
          dp, hp, wp, rstd.ptr<float>(), rp, xp, partial, int(H), T, rows_per_block);
      BEAVER_CUDA_LAUNCH_CHECK();
    };
    if (vec) {
      if (packs <= 256) reg(rmsnorm_bwd_reg_kernel<T_, kP, 1>, 1);
      else if (packs <= 512) reg(rmsnorm_bwd_reg_kernel<T_, kP, 2>, 2);
      else if (packs <= 4 * 512) reg(rmsnorm_bwd_reg_kernel<T_, kP, 4>, 4);
      else smem_path(rmsnorm_bwd_kernel<T_, kP>);
    } else {
      if (packs <= 4 * 256) reg(rmsnorm_bwd_reg_kernel<T_, 1, 4>, 4);
      else if (packs <= 8 * 512) reg(rmsnorm_bwd_reg_kernel<T_, 1, 8>, 8);
      else smem_path(rmsnorm_bwd_kernel<T_, 1>);
    }
  });
  dweight_reduce_kernel<<<unsigned((H + kRedCols - 1) / kRedCols), kRedCols * kRedLanes, 0,
                          stream_of(ctx)>>>(partial, blocks, int(H), dweight.ptr<float>(),
                                            accumulate_weight);
  BEAVER_CUDA_LAUNCH_CHECK();
}

}  // namespace beaver::ops::cuda
