// CUDA backend of the token embedding and its deterministic backward (csrc/ops/embedding.h).
// Layout: tokens i32 [T]; table / dtable [V, H]; out / dout [T, H] (rows of H, row-major).
// Forward: one block per token copies table[id] into out[t] with 16-byte packs (8 bf16 or
// 4 f32) when H and the pointers allow, else element by element; an id outside [0, V) writes a
// zero row. table and out share one dtype (f32 or bf16).
// Backward (no atomics): a stable radix sort (CUB) of the token ids, carrying the position t,
// groups equal ids with their positions in increasing t. The sorted list is cut into segments of
// 128 positions (kernels/embedding_plan.h): a first pass, one block per (segment, column chunk),
// sums each run's piece in the segment in increasing t (fp32, from dtable[v] when accumulating)
// and writes runs that lie inside one segment directly; runs that cross a segment boundary (the
// pad id of a padded batch) leave one f32 partial per segment, which a second pass adds in
// segment order and writes once. So no block walks more than 128 positions plus one partial per
// segment a run spans, and the order of every sum depends only on T and the ids: the result is
// bitwise reproducible. When not accumulating, dtable is first zeroed (rows of ids that do not
// occur must read 0). Ids outside [0, V) are dropped: they sort into one sentinel key V that no
// block writes. dout and dtable may each be f32 or bf16.
// Scratch: 4 arrays of T 32-bit words, the partials (2 rows of H f32 per segment) and CUB's
// temporary storage.
#include <cub/device/device_radix_sort.cuh>

#include "csrc/ops/embedding.h"
#include "kernels/common.cuh"
#include "kernels/embedding_plan.h"

namespace beaver::ops::cuda {

using namespace detail;

namespace {

constexpr int kThreads = 128;

template <typename T, int P>
__global__ void __launch_bounds__(256)
    embedding_fwd_kernel(const int32_t* __restrict__ tokens, const T* __restrict__ table,
                         T* __restrict__ out, int64_t V, int64_t H) {
  const int64_t t = blockIdx.x;
  const int32_t id = tokens[t];
  const bool valid = id >= 0 && int64_t(id) < V;
  const T* src = table + (valid ? int64_t(id) : 0) * H;
  T* dst = out + t * H;
  const int64_t packs = H / P;
  for (int64_t c = threadIdx.x; c < packs; c += blockDim.x) {
    float x[P];
    if (valid) {
      load_pack<T, P>(src + c * P, x);
    } else {
#pragma unroll
      for (int j = 0; j < P; ++j) x[j] = 0.0f;
    }
    store_pack<T, P>(dst + c * P, x);
  }
}

// Sort keys (ids, out-of-range mapped to V) and the positions 0..T-1 they carry.
__global__ void embedding_keys_kernel(const int32_t* __restrict__ tokens, int64_t T, int64_t V,
                                      uint32_t* __restrict__ keys, uint32_t* __restrict__ pos) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < T; t += stride) {
    const int32_t id = tokens[t];
    keys[t] = (id >= 0 && int64_t(id) < V) ? uint32_t(id) : uint32_t(V);
    pos[t] = uint32_t(t);
  }
}

// Pass 1, one block per (segment, column chunk): sums every piece of the segment in increasing
// k (kernels/embedding_plan.h); local runs are written to dtable, pieces of runs that cross a
// segment boundary go to the f32 partials [segments, 2, H].
template <typename TD, typename TT, int P>
__global__ void __launch_bounds__(kThreads)
    embedding_bwd_segment_kernel(const uint32_t* __restrict__ keys,
                                 const uint32_t* __restrict__ pos, const TD* __restrict__ dout,
                                 TT* __restrict__ dtable, float* __restrict__ partial, int64_t T,
                                 int64_t V, int64_t H, bool accumulate) {
  namespace ep = embedding_plan;
  const int64_t g = blockIdx.x;
  const int64_t c = (int64_t(blockIdx.y) * blockDim.x + threadIdx.x) * P;  // first column
  if (c >= H) return;
  const int64_t sb = ep::segment_begin(g), se = ep::segment_end(g, T);
  for (int64_t p0 = sb; p0 < se;) {
    const int64_t p1 = ep::piece_end(keys, p0, se);
    const uint32_t v = keys[p0];
    if (int64_t(v) < V) {
      const ep::Piece kind = ep::piece_kind(keys, T, p0, p1, sb, se);
      TT* row = dtable + int64_t(v) * H + c;
      float acc[P];
      if (kind == ep::Piece::kLocal && accumulate) {
        load_pack<TT, P>(row, acc);
      } else {
#pragma unroll
        for (int j = 0; j < P; ++j) acc[j] = 0.0f;
      }
      for (int64_t k = p0; k < p1; ++k) add_pack<TD, P>(dout + int64_t(pos[k]) * H + c, acc);
      if (kind == ep::Piece::kLocal)
        store_pack<TT, P>(row, acc);
      else
        store_pack<float, P>(partial + (2 * g + (kind == ep::Piece::kHead ? 0 : 1)) * H + c,
                             acc);
    }
    p0 = p1;
  }
}

// Pass 2, one block per (segment, column chunk): the run that begins in the segment and crosses
// its end (if any) is finished from the partials, in segment order.
template <typename TT, int P>
__global__ void __launch_bounds__(kThreads)
    embedding_bwd_combine_kernel(const uint32_t* __restrict__ keys,
                                 const float* __restrict__ partial, TT* __restrict__ dtable,
                                 int64_t T, int64_t V, int64_t H, bool accumulate) {
  namespace ep = embedding_plan;
  const int64_t g = blockIdx.x;
  const int64_t c = (int64_t(blockIdx.y) * blockDim.x + threadIdx.x) * P;
  if (c >= H) return;
  const int64_t a = ep::crossing_run_start(keys, T, g);
  if (a < 0 || int64_t(keys[a]) >= V) return;
  const int64_t last = ep::last_segment_of_run(keys, T, a);
  TT* row = dtable + int64_t(keys[a]) * H + c;
  float acc[P];
  if (accumulate) {
    load_pack<TT, P>(row, acc);
  } else {
#pragma unroll
    for (int j = 0; j < P; ++j) acc[j] = 0.0f;
  }
  add_pack<float, P>(partial + (2 * g + 1) * H + c, acc);
  // The bounds are known, so the loads of consecutive partials are independent and in flight
  // together; only the adds are serial.
#pragma unroll 4
  for (int64_t h = g + 1; h <= last; ++h) add_pack<float, P>(partial + (2 * h) * H + c, acc);
  store_pack<TT, P>(row, acc);
}

int key_bits(int64_t V) {  // bits needed for keys in [0, V]
  int b = 1;
  while (b < 32 && (int64_t(1) << b) <= V) ++b;
  return b;
}

}  // namespace

void embedding_fwd(Context& ctx, const Tensor& tokens, const Tensor& table, const Tensor& out) {
  constexpr const char* op = "embedding_fwd";
  BEAVER_CHECK(table.rank() == 2, op, ": table must be [V, H], got ", table.str());
  const int64_t V = table.size(0), H = table.size(1);
  const int64_t T = tokens.numel();
  BEAVER_CHECK(tokens.dtype == DType::I32, op, ": tokens ", tokens.str(), " must be i32");
  BEAVER_CHECK(out.dtype == table.dtype && out.numel() == T * H, op, ": out ", out.str(),
               " must be [", T, ", ", H, "] of the table's dtype");
  BEAVER_CHECK(T < (int64_t(1) << 31), op, ": ", T, " tokens exceed one launch");
  if (T == 0 || H == 0) return;
  with_float(table.dtype, op, "table", [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    constexpr int kP = 16 / int(sizeof(T_));
    const bool vec = H % kP == 0 && aligned(table.data, 16) && aligned(out.data, 16);
    const int threads = row_threads(vec ? H / kP : H, 256);
    const auto* tk = tokens.ptr<int32_t>();
    const auto* tb = static_cast<const T_*>(table.data);
    auto* o = static_cast<T_*>(out.data);
    if (vec)
      embedding_fwd_kernel<T_, kP><<<unsigned(T), threads, 0, stream_of(ctx)>>>(tk, tb, o, V, H);
    else
      embedding_fwd_kernel<T_, 1><<<unsigned(T), threads, 0, stream_of(ctx)>>>(tk, tb, o, V, H);
    BEAVER_CUDA_LAUNCH_CHECK();
  });
}

void embedding_bwd(Context& ctx, const Tensor& tokens, const Tensor& dout, const Tensor& dtable,
                   bool accumulate) {
  constexpr const char* op = "embedding_bwd";
  BEAVER_CHECK(dtable.rank() == 2, op, ": dtable must be [V, H], got ", dtable.str());
  const int64_t V = dtable.size(0), H = dtable.size(1);
  const int64_t T = tokens.numel();
  BEAVER_CHECK(tokens.dtype == DType::I32, op, ": tokens ", tokens.str(), " must be i32");
  BEAVER_CHECK(dout.numel() == T * H, op, ": dout ", dout.str(), " must be [", T, ", ", H, "]");
  BEAVER_CHECK(T < (int64_t(1) << 31) && V < (int64_t(1) << 31), op, ": ", T, " tokens or ", V,
               " rows exceed 32-bit sort keys");
  cudaStream_t stream = stream_of(ctx);
  if (!accumulate && dtable.nbytes() > 0)
    BEAVER_CUDA_CHECK(cudaMemsetAsync(dtable.data, 0, dtable.nbytes(), stream));
  if (T == 0 || H == 0) return;

  const int n = int(T);
  size_t temp_bytes = 0;
  BEAVER_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, temp_bytes, static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
      static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr), n, 0, key_bits(V),
      stream));
  const size_t arr = round256(size_t(T) * sizeof(uint32_t));
  const int64_t segs = embedding_plan::segments(T);
  BEAVER_CHECK(segs < (int64_t(1) << 31), op, ": ", T, " tokens exceed one launch");
  const size_t part_bytes = round256(size_t(segs) * 2 * size_t(H) * sizeof(float));
  auto* base = static_cast<char*>(ctx.scratch(4 * arr + part_bytes + round256(temp_bytes)));
  auto* keys_in = reinterpret_cast<uint32_t*>(base);
  auto* pos_in = reinterpret_cast<uint32_t*>(base + arr);
  auto* keys = reinterpret_cast<uint32_t*>(base + 2 * arr);
  auto* pos = reinterpret_cast<uint32_t*>(base + 3 * arr);
  auto* partial = reinterpret_cast<float*>(base + 4 * arr);
  void* temp = base + 4 * arr + part_bytes;

  embedding_keys_kernel<<<grid_for(ctx, T, 256), 256, 0, stream>>>(tokens.ptr<int32_t>(), T, V,
                                                                     keys_in, pos_in);
  BEAVER_CUDA_LAUNCH_CHECK();
  BEAVER_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys, pos_in, pos,
                                                    n, 0, key_bits(V), stream));

  with_float(dout.dtype, op, "dout", [&](auto dtag) {
    using TD = typename decltype(dtag)::type;
    with_float(dtable.dtype, op, "dtable", [&](auto ttag) {
      using TT = typename decltype(ttag)::type;
      constexpr int kP = 4;  // 16-byte f32 / 8-byte bf16 accesses
      const bool vec = H % kP == 0 && aligned(dout.data, kP * sizeof(TD)) &&
                       aligned(dtable.data, kP * sizeof(TT));
      const int p = vec ? kP : 1;
      const int64_t chunks = (H + int64_t(kThreads) * p - 1) / (int64_t(kThreads) * p);
      BEAVER_CHECK(chunks < 65536, op, ": hidden size ", H, " too large");
      const dim3 grid{unsigned(segs), unsigned(chunks)};
      const auto* d = static_cast<const TD*>(dout.data);
      auto* tb = static_cast<TT*>(dtable.data);
      if (vec) {
        embedding_bwd_segment_kernel<TD, TT, kP>
            <<<grid, kThreads, 0, stream>>>(keys, pos, d, tb, partial, T, V, H, accumulate);
        BEAVER_CUDA_LAUNCH_CHECK();
        embedding_bwd_combine_kernel<TT, kP>
            <<<grid, kThreads, 0, stream>>>(keys, partial, tb, T, V, H, accumulate);
      } else {
        embedding_bwd_segment_kernel<TD, TT, 1>
            <<<grid, kThreads, 0, stream>>>(keys, pos, d, tb, partial, T, V, H, accumulate);
        BEAVER_CUDA_LAUNCH_CHECK();
        embedding_bwd_combine_kernel<TT, 1>
            <<<grid, kThreads, 0, stream>>>(keys, partial, tb, T, V, H, accumulate);
      }
      BEAVER_CUDA_LAUNCH_CHECK();
    });
  });
}

}  // namespace beaver::ops::cuda
