// Rotary position embedding: inverse frequencies (with llama3 scaling), argument checks,
// dispatch, and the CPU twin.
// rope_inv_freq reproduces HF transformers' fp32 arithmetic step by step (base frequencies as
// 1 / (theta ** (arange(0, d, 2).float() / d)), then _compute_llama3_parameters), so the
// frequencies, and hence the rotations, match the reference model's to the last bit or so.
// The CPU twin keeps a cos/sin table per position in the context (built once for the
// frequencies it is called with, grown when a larger position comes) and applies a position's
// row to every head; a table entry is the same float expression as computing it on the spot.
#include "csrc/ops/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "csrc/ops/cpu_threads.h"
#include "csrc/ops/dispatch.h"

namespace beaver::ops {

std::vector<float> rope_inv_freq(int head_dim, double theta, const RopeScaling& scaling) {
  constexpr std::string_view op = "rope_inv_freq";
  BEAVER_CHECK(head_dim > 0 && head_dim % 2 == 0, op, ": head_dim must be positive and even, got ",
               head_dim);
  BEAVER_CHECK(std::isfinite(theta) && theta > 0.0, op, ": theta must be positive, got ", theta);
  const int half = head_dim / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  const float base = float(theta);
  for (int i = 0; i < half; ++i) {
    const float e = float(2 * i) / float(head_dim);  // arange(...).float() / dim
    inv[size_t(i)] = 1.0f / std::pow(base, e);
  }
  if (!scaling.llama3) return inv;

  BEAVER_CHECK(std::isfinite(scaling.factor) && scaling.factor > 0.0, op,
               ": llama3 factor must be positive, got ", scaling.factor);
  BEAVER_CHECK(scaling.low_freq_factor > 0.0 && scaling.high_freq_factor > scaling.low_freq_factor,
               op, ": llama3 needs 0 < low_freq_factor < high_freq_factor, got low ",
               scaling.low_freq_factor, " high ", scaling.high_freq_factor);
  BEAVER_CHECK(scaling.original_max_position > 0, op,
               ": llama3 original_max_position must be positive, got ",
               scaling.original_max_position);
  // Python scalars (double) meet fp32 tensors: torch casts the scalar to fp32 for each op.
  const double old_len = double(scaling.original_max_position);
  const float low_wavelen = float(old_len / scaling.low_freq_factor);
  const float high_wavelen = float(old_len / scaling.high_freq_factor);
  const float factor = float(scaling.factor);
  const float low = float(scaling.low_freq_factor);
  const float span = float(scaling.high_freq_factor - scaling.low_freq_factor);
  const float two_pi = float(2.0 * std::numbers::pi);
  for (float& f : inv) {
    const float wavelen = two_pi / f;
    float g = wavelen > low_wavelen ? f / factor : f;
    const float smooth = (float(old_len) / wavelen - low) / span;
    const float smoothed = (1.0f - smooth) * g / factor + smooth * g;
    const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
    if (medium) g = smoothed;
    f = g;
  }
  return inv;
}

void rope_apply(Context& ctx, const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
                bool inverse) {
  constexpr std::string_view op = "rope_apply";
  expect_rank(x, 3, op, "x");
  BEAVER_CHECK(is_float(x.dtype), op, ": x has dtype ", dtype_name(x.dtype),
               " but expected a float dtype");
  const int64_t d = x.size(2);
  BEAVER_CHECK(d > 0 && d % 2 == 0, op, ": x has head_dim ", d, " (shape ", x.shape.str(),
               ") but it must be positive and even");
  expect_shape(positions, Shape{x.size(0)}, op, "positions");
  expect_dtype(positions, DType::I32, op, "positions");
  expect_shape(inv_freq, Shape{d / 2}, op, "inv_freq");
  expect_dtype(inv_freq, DType::F32, op, "inv_freq");
  expect_defined(x, op, "x");
  expect_defined(positions, op, "positions");
  expect_defined(inv_freq, op, "inv_freq");
  expect_on(ctx, {&x, &positions, &inv_freq}, op);
  BEAVER_DISPATCH(ctx, rope_apply, ctx, x, positions, inv_freq, inverse);
}

namespace {

void check_qk(const Tensor& q, const Tensor& k, std::string_view op, const char* qn,
              const char* kn) {
  expect_rank(q, 3, op, qn);
  expect_rank(k, 3, op, kn);
  if (q.size(0) != k.size(0) || q.size(2) != k.size(2))
    BEAVER_FAIL(op, ": ", qn, " ", q.shape.str(), " and ", kn, " ", k.shape.str(),
                " must share T (dim 0) and head_dim (dim 2)");
}

}  // namespace

void rope_fwd(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& positions,
              const Tensor& inv_freq) {
  check_qk(q, k, "rope_fwd", "q", "k");
  rope_apply(ctx, q, positions, inv_freq, false);
  rope_apply(ctx, k, positions, inv_freq, false);
}

void rope_bwd(Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& positions,
              const Tensor& inv_freq) {
  check_qk(dq, dk, "rope_bwd", "dq", "dk");
  rope_apply(ctx, dq, positions, inv_freq, true);
  rope_apply(ctx, dk, positions, inv_freq, true);
}

namespace cpu {

namespace {

// cos(p · f_i) in [0, half), sin(p · f_i) in [half, d) for every position p < rows(), for the
// frequencies `freq`; kept in the context, so the training loop builds it once.
struct RopeTable {
  std::vector<float> freq, cs;
  int64_t rows() const { return freq.empty() ? 0 : int64_t(cs.size() / (2 * freq.size())); }
};

const RopeTable& rope_table(Context& ctx, const float* freq, int64_t half, int64_t max_pos) {
  RopeTable& tb = ctx.backend_cache<RopeTable>();
  const bool same = int64_t(tb.freq.size()) == half && std::equal(freq, freq + half, tb.freq.begin());
  if (same && max_pos < tb.rows()) return tb;
  // Rows for every position up to the next power of two above max_pos (at least 256).
  int64_t rows = same ? std::max<int64_t>(tb.rows(), 256) : 256;
  while (rows <= max_pos) rows *= 2;
  tb.freq.assign(freq, freq + half);
  tb.cs.resize(size_t(rows * 2 * half));
  for (int64_t p = 0; p < rows; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const float angle = float(p) * freq[i];
      tb.cs[size_t(p * 2 * half + i)] = std::cos(angle);
      tb.cs[size_t(p * 2 * half + half + i)] = std::sin(angle);
    }
  return tb;
}

}  // namespace

void rope_apply(Context& ctx, const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
                bool inverse) {
  expect_dtype(x, DType::F32, "rope_apply (cpu)", "x");
  const int64_t rows = x.size(0), heads = x.size(1), d = x.size(2), half = d / 2;
  float* xp = x.ptr<float>();
  const int32_t* pos = positions.ptr<int32_t>();
  const float* freq = inv_freq.ptr<float>();
  int32_t max_pos = 0;
  bool negative = false;
  for (int64_t t = 0; t < rows; ++t) {
    max_pos = std::max(max_pos, pos[t]);
    negative = negative || pos[t] < 0;
  }
  const RopeTable& tb = rope_table(ctx, freq, half, max_pos);
  // A negative position (no caller makes one) has its row computed on the spot, per thread.
  auto* own_all =
      negative ? static_cast<float*>(ctx.scratch(size_t(ctx.threads() * d) * 4)) : nullptr;
  const float sign = inverse ? -1.0f : 1.0f;
  parallel_region(ctx.threads(), x.numel() > 16384, [&](int tid, int nthreads) {
    const auto [t0, t1] = static_part(rows, tid, nthreads);
    for (int64_t t = t0; t < t1; ++t) {
      const float* cs = nullptr;
      if (pos[t] >= 0) {
        cs = tb.cs.data() + int64_t(pos[t]) * d;
      } else {
        float* own = own_all + size_t(tid * d);
        for (int64_t i = 0; i < half; ++i) {
          const float angle = float(pos[t]) * freq[i];
          own[i] = std::cos(angle);
          own[half + i] = std::sin(angle);
        }
        cs = own;
      }
      for (int64_t hd = 0; hd < heads; ++hd) {
        float* v = xp + (t * heads + hd) * d;
        for (int64_t i = 0; i < half; ++i) {
          const float c = cs[i], s = sign * cs[half + i];
          const float a = v[i], b = v[half + i];
          v[i] = a * c - b * s;
          v[half + i] = b * c + a * s;
        }
      }
    }
  });
}

}  // namespace cpu
}  // namespace beaver::ops
