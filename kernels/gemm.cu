// CUDA backend of the GEMM (csrc/ops/gemm.h) through cuBLASLt.
// Layout: row-major C[M,N] = alpha * op(A) @ op(B) + beta * C, A [M,K] (or [K,M] when
// trans_a), B [K,N] (or [N,K] when trans_b). cuBLASLt is column-major, and a row-major matrix
// read as column-major is its transpose, so we compute C^T = op(B)^T op(A)^T: cuBLASLt's A is
// our B (N x K after its op), its B is our A (K x M), and its C/D is our C viewed as an N x M
// column-major matrix with leading dimension N. No data is moved.
// Types: A and B share one dtype; (bf16, bf16) -> C bf16 or f32, (f32, f32) -> C f32.
// Precision: CUBLAS_COMPUTE_32F (fp32 accumulation; f32 inputs stay fp32, no TF32), fp32
// alpha/beta; beta == 0 does not read C (BLAS semantics).
// Determinism: the algorithm comes from cuBLASLt's heuristic, restricted to no split-K or
// split-K reduced in the compute type in a separate pass (no in-place reduction in the output
// type, no atomics), so the same shapes on the same device give the same bits.
// Descriptors, layouts and the heuristic's algorithm are made once per shape (M, N, K,
// transposes, dtypes and the pointers' alignments) and kept in the context
// (Context::backend_cache), so a repeated GEMM costs one cublasLtMatmul call; the workspace is
// the context's fixed gemm workspace. Pointer alignment is part of the key and passed to the
// heuristic so that views at odd offsets get an algorithm that accepts them.
#include <cublasLt.h>

#include <memory>
#include <unordered_map>
#include <type_traits>

#include "csrc/ops/elementwise.h"
#include "csrc/ops/gemm.h"
#include "kernels/common.cuh"

namespace beaver::ops::cuda {

using namespace detail;

namespace {

template <typename H, cublasStatus_t (*Destroy)(H)>
struct LtDeleter {
  void operator()(H h) const { Destroy(h); }
};
template <typename H, cublasStatus_t (*Destroy)(H)>
using LtHandle = std::unique_ptr<std::remove_pointer_t<H>, LtDeleter<H, Destroy>>;
using MatmulDesc = LtHandle<cublasLtMatmulDesc_t, cublasLtMatmulDescDestroy>;
using Layout = LtHandle<cublasLtMatrixLayout_t, cublasLtMatrixLayoutDestroy>;
using Preference = LtHandle<cublasLtMatmulPreference_t, cublasLtMatmulPreferenceDestroy>;

cudaDataType_t lt_type(DType d) {
  switch (d) {
    case DType::F32: return CUDA_R_32F;
    case DType::BF16: return CUDA_R_16BF;
    default: BEAVER_FAIL("gemm: dtype ", dtype_name(d), " is not supported on CUDA");
  }
}

Layout make_layout(DType d, int64_t rows, int64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t l = nullptr;
  BEAVER_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&l, lt_type(d), uint64_t(rows), uint64_t(cols), ld));
  return Layout(l);
}

uint32_t alignment_of(const void* p) {
  uint32_t a = 256;
  while (a > 1 && reinterpret_cast<uintptr_t>(p) % a != 0) a >>= 1;
  return a;
}

// What selects a plan: everything the descriptors and the heuristic depend on.
struct PlanKey {
  int64_t M, N, K;
  int ta, tb;
  DType ab, c;
  uint32_t al_a, al_b, al_c;
  bool operator==(const PlanKey& o) const {
    return M == o.M && N == o.N && K == o.K && ta == o.ta && tb == o.tb && ab == o.ab &&
           c == o.c && al_a == o.al_a && al_b == o.al_b && al_c == o.al_c;
  }
};
struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    size_t h = 1469598103934665603ull;
    auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    mix(uint64_t(k.M));
    mix(uint64_t(k.N));
    mix(uint64_t(k.K));
    mix(uint64_t(k.ta) | uint64_t(k.tb) << 1 | uint64_t(k.ab) << 2 | uint64_t(k.c) << 10);
    mix(uint64_t(k.al_a) | uint64_t(k.al_b) << 16 | uint64_t(k.al_c) << 32);
    return h;
  }
};
struct Plan {
  MatmulDesc desc;
  Layout a, b, c;
  cublasLtMatmulAlgo_t algo{};
};
struct GemmPlans {
  std::unordered_map<PlanKey, Plan, PlanKeyHash> plans;
};

}  // namespace

void gemm(Context& ctx, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
          const Tensor& c, float alpha, float beta) {
  constexpr const char* op = "gemm";
  BEAVER_CHECK(a.rank() == 2 && b.rank() == 2 && c.rank() == 2, op, ": a ", a.str(), ", b ",
               b.str(), " and c ", c.str(), " must be matrices");
  const int64_t M = trans_a ? a.size(1) : a.size(0);
  const int64_t K = trans_a ? a.size(0) : a.size(1);
  const int64_t Kb = trans_b ? b.size(1) : b.size(0);
  const int64_t N = trans_b ? b.size(0) : b.size(1);
  BEAVER_CHECK(K == Kb && c.size(0) == M && c.size(1) == N, op, ": shapes do not chain: a ",
               a.str(), (trans_a ? "^T" : ""), ", b ", b.str(), (trans_b ? "^T" : ""), ", c ",
               c.str());
  BEAVER_CHECK(a.dtype == b.dtype, op, ": a ", a.str(), " and b ", b.str(),
               " must share one dtype");
  const bool types_ok = (a.dtype == DType::BF16 && (c.dtype == DType::BF16 || c.dtype == DType::F32)) ||
                        (a.dtype == DType::F32 && c.dtype == DType::F32);
  BEAVER_CHECK(types_ok, op, ": unsupported dtypes on CUDA: a/b ", dtype_name(a.dtype), ", c ",
               dtype_name(c.dtype), " (supported: bf16 -> bf16 or f32, f32 -> f32)");
  if (M == 0 || N == 0) return;
  if (K == 0) {  // no products: C = beta * C (and C is not read when beta == 0)
    if (beta == 0.0f)
      fill(ctx, c, 0.0f);
    else
      scale(ctx, c, beta);
    return;
  }

  auto handle = static_cast<cublasLtHandle_t>(ctx.cublaslt());
  cudaStream_t stream = stream_of(ctx);
  const size_t ws_bytes = ctx.gemm_workspace_bytes();
  const uint32_t al_a = alignment_of(b.data), al_b = alignment_of(a.data);  // cuBLASLt's A, B
  const uint32_t al_c = alignment_of(c.data);
  const PlanKey key{M, N, K, trans_a ? 1 : 0, trans_b ? 1 : 0, a.dtype, c.dtype,
                    al_a, al_b, al_c};
  auto& plans = ctx.backend_cache<GemmPlans>().plans;
  auto it = plans.find(key);
  if (it == plans.end()) {
    Plan plan;
    cublasLtMatmulDesc_t desc_raw = nullptr;
    BEAVER_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc_raw, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    plan.desc = MatmulDesc(desc_raw);
    const cublasOperation_t op_lt_a = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt A = our B
    const cublasOperation_t op_lt_b = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt B = our A
    BEAVER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan.desc.get(), CUBLASLT_MATMUL_DESC_TRANSA, &op_lt_a, sizeof(op_lt_a)));
    BEAVER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan.desc.get(), CUBLASLT_MATMUL_DESC_TRANSB, &op_lt_b, sizeof(op_lt_b)));

    // Column-major views of the row-major buffers (rows, cols, leading dimension).
    plan.a = trans_b ? make_layout(b.dtype, K, N, K) : make_layout(b.dtype, N, K, N);
    plan.b = trans_a ? make_layout(a.dtype, M, K, M) : make_layout(a.dtype, K, M, K);
    plan.c = make_layout(c.dtype, N, M, N);

    cublasLtMatmulPreference_t pref_raw = nullptr;
    BEAVER_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref_raw));
    const Preference pref(pref_raw);
    BEAVER_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.get(), CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof(ws_bytes)));
    const uint32_t schemes =
        CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    BEAVER_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.get(), CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes, sizeof(schemes)));
    BEAVER_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a)));
    BEAVER_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b)));
    BEAVER_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof(al_c)));
    BEAVER_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof(al_c)));

    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    BEAVER_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(handle, plan.desc.get(), plan.a.get(),
                                                       plan.b.get(), plan.c.get(), plan.c.get(),
                                                       pref.get(), 1, &result, &found));
    BEAVER_CHECK(found > 0, op, ": cuBLASLt has no algorithm for M=", M, " N=", N, " K=", K,
                 " a/b ", dtype_name(a.dtype), " c ", dtype_name(c.dtype));
    plan.algo = result.algo;
    it = plans.emplace(key, std::move(plan)).first;
  }
  const Plan& plan = it->second;
  BEAVER_CUBLAS_CHECK(cublasLtMatmul(handle, plan.desc.get(), &alpha, b.data, plan.a.get(),
                                     a.data, plan.b.get(), &beta, c.data, plan.c.get(), c.data,
                                     plan.c.get(), &plan.algo, ctx.gemm_workspace(), ws_bytes,
                                     stream));
}

}  // namespace beaver::ops::cuda
