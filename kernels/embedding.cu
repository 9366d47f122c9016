// CUDA backend of the token embedding and its deterministic backward (csrc/ops/embedding.h).
// Layout: tokens i32 [T]; table / dtable [V, H]; out / dout [T, H] (rows of H, row-major).
// Forward: one block per token copies table[id] into out[t] with 16-byte packs (8 bf16 or
// 4 f32) when H and the pointers allow, else element by element; an id outside [0, V) writes a
// zero row. table and out share one dtype (f32 or bf16).
// Backward (no atomics): a stable radix sort (CUB) of the token ids, carrying the position t,
// groups equal ids with their positions in increasing t. One kernel then walks the sorted list:
// at the start of each run of one id v, a block sums dout[t, chunk] over the run in order
// (fp32, starting from dtable[v] when accumulating) and writes dtable[v, chunk] once; a second
// grid dimension splits the columns into chunks. The sum order is increasing t, exactly the
// contract, so the result is bitwise reproducible. When not accumulating, dtable is first
// zeroed (rows of ids that do not occur must read 0). Ids outside [0, V) are dropped: they sort
// into one sentinel key V that no block writes. A very frequent id is summed by one block per
// column chunk (sequential in t by contract). dout and dtable may each be f32 or bf16.
// Scratch: 4 arrays of T 32-bit words plus CUB's temporary storage.
#include <cub/device/device_radix_sort.cuh>

#include "csrc/ops/embedding.h"
#include "kernels/common.cuh"

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

template <typename TD, typename TT, int P>
__global__ void __launch_bounds__(kThreads)
    embedding_bwd_kernel(const uint32_t* __restrict__ keys, const uint32_t* __restrict__ pos,
                         const TD* __restrict__ dout, TT* __restrict__ dtable, int64_t T,
                         int64_t V, int64_t H, bool accumulate) {
  const int64_t c = (int64_t(blockIdx.y) * blockDim.x + threadIdx.x) * P;  // first column
  const bool active = c < H;
  for (int64_t i = blockIdx.x; i < T; i += gridDim.x) {
    const uint32_t v = keys[i];
    if (int64_t(v) >= V || (i > 0 && keys[i - 1] == v)) continue;  // not the start of a run
    if (!active) continue;
    float acc[P];
    TT* row = dtable + int64_t(v) * H + c;
    if (accumulate) {
      load_pack<TT, P>(row, acc);
    } else {
#pragma unroll
      for (int j = 0; j < P; ++j) acc[j] = 0.0f;
    }
    for (int64_t k = i; k < T && keys[k] == v; ++k) {
      float d[P];
      load_pack<TD, P>(dout + int64_t(pos[k]) * H + c, d);
#pragma unroll
      for (int j = 0; j < P; ++j) acc[j] += d[j];
    }
    store_pack<TT, P>(row, acc);
  }
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
  auto* base = static_cast<char*>(ctx.scratch(4 * arr + round256(temp_bytes)));
  auto* keys_in = reinterpret_cast<uint32_t*>(base);
  auto* pos_in = reinterpret_cast<uint32_t*>(base + arr);
  auto* keys = reinterpret_cast<uint32_t*>(base + 2 * arr);
  auto* pos = reinterpret_cast<uint32_t*>(base + 3 * arr);
  void* temp = base + 4 * arr;

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
      const int64_t gx = std::min<int64_t>(T, int64_t(sm_count(ctx)) * 16);
      const dim3 grid{unsigned(gx), unsigned(chunks)};
      const auto* d = static_cast<const TD*>(dout.data);
      auto* tb = static_cast<TT*>(dtable.data);
      if (vec)
        embedding_bwd_kernel<TD, TT, kP>
            <<<grid, kThreads, 0, stream>>>(keys, pos, d, tb, T, V, H, accumulate);
      else
        embedding_bwd_kernel<TD, TT, 1>
            <<<grid, kThreads, 0, stream>>>(keys, pos, d, tb, T, V, H, accumulate);
      BEAVER_CUDA_LAUNCH_CHECK();
    });
  });
}

}  // namespace beaver::ops::cuda
