// Next-token sampling: argument checks, dispatch, and the CPU twin, which follows the five
// steps of the definition in sampling.h literally (it may sort; the GPU may not). Rows run in
// parallel, each with its own scratch; all masses are accumulated in fp64 in a fixed order, so
// a (seed, step) pair gives the same token for any thread count. Rows whose logits contain NaN
// or +inf (or are all -inf) have no distribution: they are reported as an error after the
// parallel loop, naming the first such row.
#include "csrc/ops/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "csrc/ops/cpu_exp.h"
#include "csrc/ops/dispatch.h"
#include "csrc/philox.h"

namespace beaver::ops {

void sample(Context& ctx, const Tensor& logits, const SamplingConfig& cfg, const Tensor& seeds,
            uint64_t step, const Tensor& tokens) {
  constexpr std::string_view op = "sample";
  expect_defined(logits, op, "logits");
  expect_rank(logits, 2, op, "logits");
  BEAVER_CHECK(logits.dtype == DType::F32 || logits.dtype == DType::BF16, op,
               ": logits has dtype ", dtype_name(logits.dtype), " but expected f32 or bf16");
  const int64_t B = logits.size(0), V = logits.size(1);
  BEAVER_CHECK(V >= 1 && V <= std::numeric_limits<int32_t>::max(), op,
               ": logits need a vocabulary size in [1, 2^31), got ", logits.shape.str());
  expect_defined(seeds, op, "seeds");
  expect_shape(seeds, Shape{B}, op, "seeds");
  expect_dtype(seeds, DType::I64, op, "seeds");
  expect_defined(tokens, op, "tokens");
  expect_shape(tokens, Shape{B}, op, "tokens");
  expect_dtype(tokens, DType::I32, op, "tokens");
  expect_on(ctx, {&logits, &seeds, &tokens}, op);
  BEAVER_CHECK(std::isfinite(cfg.temperature) && cfg.temperature >= 0.0f, op,
               ": temperature must be finite and >= 0, got ", cfg.temperature);
  BEAVER_CHECK(cfg.top_k >= 0, op, ": top_k must be >= 0 (0 = off), got ", cfg.top_k);
  BEAVER_CHECK(cfg.top_p > 0.0f && cfg.top_p <= 1.0f, op,
               ": top_p must be in (0, 1] (1 = off), got ", cfg.top_p);
  BEAVER_DISPATCH(ctx, sample, ctx, logits, cfg, seeds, step, tokens);
}

namespace cpu {
namespace {

// Per-thread working memory, sized once per call.
struct Scratch {
  std::vector<float> p;        // unnormalised probabilities
  std::vector<uint8_t> keep;   // 1 = still a candidate
  std::vector<int32_t> order;  // candidate indices for ranking
};

// Returns the token, or -1 when the row has no distribution (NaN, +inf, all -inf).
int32_t sample_row(const float* x, int64_t V, const SamplingConfig& cfg, uint64_t seed,
                   uint64_t step, Scratch& s) {
  // Step 1 (and the max for step 2): lowest index among the maxima.
  int64_t arg = 0;
  for (int64_t v = 0; v < V; ++v) {
    if (std::isnan(x[v])) return -1;
    if (x[v] > x[arg]) arg = v;
  }
  const float mx = x[arg];
  if (!std::isfinite(mx)) return -1;
  if (cfg.temperature == 0.0f) return int32_t(arg);

  // Step 2: unnormalised probabilities.
  // Divide rather than multiply by 1/T: for a subnormal T, 1/T is inf and 0 * inf is NaN.
  const float temp = cfg.temperature;
  for (int64_t v = 0; v < V; ++v) {
    s.p[size_t(v)] = exp_f32((x[v] - mx) / temp);
    s.keep[size_t(v)] = 1;
  }

  // Step 3: top-k by rank under (logit desc, index asc).
  if (cfg.top_k > 0 && cfg.top_k < V) {
    s.order.resize(size_t(V));
    for (int64_t v = 0; v < V; ++v) s.order[size_t(v)] = int32_t(v);
    std::nth_element(s.order.begin(), s.order.begin() + cfg.top_k, s.order.end(),
                     [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
    for (size_t r = size_t(cfg.top_k); r < size_t(V); ++r) s.keep[size_t(s.order[r])] = 0;
  }

  // Step 4: top-p, the shortest prefix under (p desc, index asc) reaching top_p of the kept
  // mass.
  if (cfg.top_p < 1.0f) {
    s.order.clear();
    double kept = 0.0;
    for (int64_t v = 0; v < V; ++v)
      if (s.keep[size_t(v)]) {
        s.order.push_back(int32_t(v));
        kept += double(s.p[size_t(v)]);
      }
    const float* p = s.p.data();
    const auto before = [p](int32_t a, int32_t b) {
      return p[a] > p[b] || (p[a] == p[b] && a < b);
    };
    const double need = double(cfg.top_p) * kept;
    // The prefix lies inside the top-k set of any k whose mass reaches `need`: double k
    // with linear-time selection, and sort only the first k.
    const size_t n = s.order.size();
    size_t k = std::min<size_t>(n, 256), sorted = 0, len = n;
    for (;;) {
      const auto first = s.order.begin();
      if (k < n)
        std::nth_element(first + ptrdiff_t(sorted), first + ptrdiff_t(k), s.order.end(), before);
      std::sort(first + ptrdiff_t(sorted), first + ptrdiff_t(k), before);
      double cum = 0.0;
      size_t i = 0;
      for (; i < k; ++i) {
        cum += double(p[s.order[i]]);
        if (cum >= need) break;
      }
      if (i < k || k == n) {
        len = std::min(i + 1, n);
        break;
      }
      sorted = k;
      k = std::min(n, 2 * k);
    }
    for (size_t r = len; r < n; ++r) s.keep[size_t(s.order[r])] = 0;
  }

  // Step 5: inverse CDF over the kept tokens in index order.
  double total = 0.0;
  int64_t last = -1;
  for (int64_t v = 0; v < V; ++v)
    if (s.keep[size_t(v)]) {
      total += double(s.p[size_t(v)]);
      last = v;
    }
  const double target = double(philox_uniform(seed, step, 0)) * total;
  double cum = 0.0;
  for (int64_t v = 0; v < V; ++v)
    if (s.keep[size_t(v)]) {
      cum += double(s.p[size_t(v)]);
      if (cum > target) return int32_t(v);
    }
  return int32_t(last);  // unreachable in exact arithmetic (u < 1); guards rounding
}

}  // namespace

void sample(Context& ctx, const Tensor& logits, const SamplingConfig& cfg, const Tensor& seeds,
            uint64_t step, const Tensor& tokens) {
  expect_dtype(logits, DType::F32, "sample", "logits (CPU backend)");
  const int64_t B = logits.size(0), V = logits.size(1);
  const float* x = logits.ptr<float>();
  const int64_t* sd = seeds.ptr<int64_t>();
  int32_t* out = tokens.ptr<int32_t>();
  int64_t bad_row = -1;
#pragma omp parallel num_threads(ctx.threads())
  {
    Scratch s;
    if (cfg.temperature != 0.0f) {
      s.p.resize(size_t(V));
      s.keep.resize(size_t(V));
      s.order.reserve(size_t(V));
    }
    int64_t my_bad = -1;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      out[b] = sample_row(x + b * V, V, cfg, uint64_t(sd[b]), step, s);
      if (out[b] < 0 && my_bad < 0) my_bad = b;
    }
#pragma omp critical(beaver_sample_bad_row)
    if (my_bad >= 0 && (bad_row < 0 || my_bad < bad_row)) bad_row = my_bad;
  }
  if (bad_row >= 0)
    BEAVER_FAIL("sample: logits row ", bad_row,
                " contains NaN or +inf or is entirely -inf (no distribution to sample)");
}

}  // namespace cpu
}  // namespace beaver::ops
