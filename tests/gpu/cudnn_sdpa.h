// cuDNN's fused scaled-dot-product attention (flash forward and backward, causal, GQA, bf16) as
// an independent oracle for Beaver's attention kernels (tests/gpu/test_attention_stress.cpp)
// and a reference row in bench_attention (bench/attention/cudnn.cu). Built through the cuDNN
// frontend's graph API (the header-only C++ frontend, from the nvidia-cudnn-frontend wheel:
// CMake's BEAVER_CUDNN_FRONTEND_DIR, see bench/README.md) over the toolkit's cuDNN 9; without
// them BEAVER_WITH_CUDNN_SDPA is undefined and every call reports that the oracle is not in the
// build, so callers skip it.
//
// Layout as Beaver's: q [B, S, nh, d], k/v [B, S, nkv, d], out like q, stats f32 [B, nh, S]
// (natural-log logsumexp of the scaled scores, as Beaver's lse). cuDNN's causal mask has no
// per-row ranges, so the oracle applies only to full rows (every range [0, S)).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "csrc/context.h"
#include "csrc/tensor.h"

#ifdef BEAVER_WITH_CUDNN_SDPA
#include <cudnn.h>
#include <cudnn_frontend.h>
#endif

namespace beaver::test {

// True when every row of a [B, 2] range list covers [0, S).
inline bool full_rows(int B, const std::vector<int32_t>& ranges, int S) {
  for (int b = 0; b < B; ++b)
    if (ranges[size_t(2 * b)] != 0 || ranges[size_t(2 * b + 1)] != S) return false;
  return true;
}

#ifdef BEAVER_WITH_CUDNN_SDPA

class CudnnSdpa {
 public:
  // Builds the forward graph, and the backward one when `backward`; error() says why not.
  CudnnSdpa(Context& ctx, int B, int S, int nh, int nkv, int d, float scale, bool backward)
      : ctx_(ctx) {
    if (cudnnCreate(&handle_) != CUDNN_STATUS_SUCCESS) {
      handle_ = nullptr;
      error_ = "cudnnCreate failed (no usable cuDNN library or device)";
      return;
    }
    cudnnSetStream(handle_, static_cast<cudaStream_t>(ctx.stream()));
    namespace fe = cudnn_frontend;
    const int64_t b = B, s = S, h = nh, hk = nkv, e = d;
    auto base = [](fe::graph::Graph& g) {
      g.set_io_data_type(fe::DataType_t::BFLOAT16)
          .set_intermediate_data_type(fe::DataType_t::FLOAT)
          .set_compute_data_type(fe::DataType_t::FLOAT);
    };
    auto tensor = [](fe::graph::Graph& g, const char* name, int64_t uid, int64_t heads,
                     int64_t bb, int64_t ss, int64_t dd) {
      return g.tensor(fe::graph::Tensor_attributes()
                          .set_name(name)
                          .set_uid(uid)
                          .set_dim({bb, heads, ss, dd})
                          .set_stride({ss * heads * dd, dd, heads * dd, 1}));
    };
    auto stats_tensor = [&](fe::graph::Graph& g) {
      return g.tensor(fe::graph::Tensor_attributes()
                          .set_name("stats")
                          .set_uid(kStats)
                          .set_dim({b, h, s, 1})
                          .set_stride({h * s, s, 1, 1})
                          .set_data_type(fe::DataType_t::FLOAT));
    };
    fwd_ = std::make_unique<fe::graph::Graph>();
    base(*fwd_);
    {
      auto q = tensor(*fwd_, "q", kQ, h, b, s, e), k = tensor(*fwd_, "k", kK, hk, b, s, e),
           v = tensor(*fwd_, "v", kV, hk, b, s, e);
      auto opt = fe::graph::SDPA_attributes()
                     .set_name("sdpa")
                     .set_generate_stats(true)
                     .set_causal_mask(true)
                     .set_attn_scale(scale);
      auto [o, stats] = fwd_->sdpa(q, k, v, opt);
      o->set_output(true).set_uid(kO).set_dim({b, h, s, e}).set_stride({s * h * e, e, h * e, 1});
      stats->set_output(true).set_uid(kStats).set_data_type(fe::DataType_t::FLOAT);
    }
    if (!build(*fwd_, fwd_ws_, "forward")) return;
    if (!backward) return;
    bwd_ = std::make_unique<fe::graph::Graph>();
    base(*bwd_);
    {
      auto q = tensor(*bwd_, "q", kQ, h, b, s, e), k = tensor(*bwd_, "k", kK, hk, b, s, e),
           v = tensor(*bwd_, "v", kV, hk, b, s, e), o = tensor(*bwd_, "o", kO, h, b, s, e),
           dO = tensor(*bwd_, "dO", kDO, h, b, s, e);
      auto stats = stats_tensor(*bwd_);
      auto opt = fe::graph::SDPA_backward_attributes()
                     .set_name("sdpa_backward")
                     .set_causal_mask(true)
                     .set_attn_scale(scale);
      auto [dq, dk, dv] = bwd_->sdpa_backward(q, k, v, o, dO, stats, opt);
      dq->set_output(true).set_uid(kDQ).set_dim({b, h, s, e}).set_stride({s * h * e, e, h * e, 1});
      dk->set_output(true).set_uid(kDK).set_dim({b, hk, s, e}).set_stride(
          {s * hk * e, e, hk * e, 1});
      dv->set_output(true).set_uid(kDV).set_dim({b, hk, s, e}).set_stride(
          {s * hk * e, e, hk * e, 1});
    }
    build(*bwd_, bwd_ws_, "backward");
  }
  ~CudnnSdpa() {
    if (handle_) cudnnDestroy(handle_);
  }
  CudnnSdpa(const CudnnSdpa&) = delete;
  CudnnSdpa& operator=(const CudnnSdpa&) = delete;

  const std::string& error() const { return error_; }

  // Queued on the context's stream; returns the error text, empty on success.
  std::string forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                      const Tensor& stats) {
    if (!error_.empty()) return error_;
    std::unordered_map<int64_t, void*> pack{
        {kQ, q.data}, {kK, k.data}, {kV, v.data}, {kO, out.data}, {kStats, stats.data}};
    return run(*fwd_, pack, fwd_ws_, "forward");
  }
  std::string backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                       const Tensor& dout, const Tensor& stats, const Tensor& dq,
                       const Tensor& dk, const Tensor& dv) {
    if (!error_.empty()) return error_;
    if (!bwd_) return "the backward graph was not built";
    std::unordered_map<int64_t, void*> pack{{kQ, q.data},   {kK, k.data},         {kV, v.data},
                                            {kO, out.data}, {kDO, dout.data},     {kStats, stats.data},
                                            {kDQ, dq.data}, {kDK, dk.data},       {kDV, dv.data}};
    return run(*bwd_, pack, bwd_ws_, "backward");
  }

 private:
  enum : int64_t { kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV };

  bool build(cudnn_frontend::graph::Graph& g, std::unique_ptr<OwnedTensor>& ws, const char* what) {
    namespace fe = cudnn_frontend;
    auto fail = [&](fe::error_t st, const char* step) {
      error_ = std::string("cuDNN SDPA ") + what + ": " + step + ": " + st.get_message();
      return false;
    };
    if (auto st = g.validate(); st.is_bad()) return fail(st, "validate");
    if (auto st = g.build_operation_graph(handle_); st.is_bad()) return fail(st, "operation graph");
    if (auto st = g.create_execution_plans({fe::HeurMode_t::A}); st.is_bad())
      return fail(st, "execution plans");
    if (auto st = g.check_support(handle_); st.is_bad()) return fail(st, "support");
    if (auto st = g.build_plans(handle_); st.is_bad()) return fail(st, "build plans");
    int64_t bytes = 0;
    if (auto st = g.get_workspace_size(bytes); st.is_bad()) return fail(st, "workspace size");
    ws = std::make_unique<OwnedTensor>(DType::U8, Shape{std::max<int64_t>(bytes, 1)},
                                       Device::CUDA);
    return true;
  }

  std::string run(cudnn_frontend::graph::Graph& g, std::unordered_map<int64_t, void*>& pack,
                  const std::unique_ptr<OwnedTensor>& ws, const char* what) {
    if (auto st = g.execute(handle_, pack, ws->view().data); st.is_bad())
      return std::string("cuDNN SDPA ") + what + ": execute: " + st.get_message();
    return {};
  }

  Context& ctx_;
  cudnnHandle_t handle_ = nullptr;
  std::string error_;
  std::unique_ptr<cudnn_frontend::graph::Graph> fwd_, bwd_;
  std::unique_ptr<OwnedTensor> fwd_ws_, bwd_ws_;
};

inline constexpr bool kCudnnSdpaInBuild = true;

#else

class CudnnSdpa {
 public:
  CudnnSdpa(Context&, int, int, int, int, int, float, bool) {}
  const std::string& error() const { return error_; }
  std::string forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
    return error_;
  }
  std::string backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                       const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
    return error_;
  }

 private:
  std::string error_ =
      "cuDNN SDPA is not in this build (configure with BEAVER_CUDNN_FRONTEND_DIR and cuDNN 9)";
};

inline constexpr bool kCudnnSdpaInBuild = false;

#endif

}  // namespace beaver::test
