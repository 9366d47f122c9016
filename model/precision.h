// The dtype decisions of the LLaMA graph, in one place. The model and the inference engine ask
// this plan for every dtype they allocate, so a backend's precision is chosen here and nowhere
// else.
//
// CPU (the numerical reference): everything fp32, no working copy; the ops run on the fp32
// master parameters directly.
// CUDA (mixed precision): the kernels take bf16 activations (attention requires them for
// q/k/v/out and their gradients; RMSNorm, RoPE, SwiGLU, the embedding and the GEMMs accept
// them), so
//   master params, grads   fp32 (AdamW and the gradient norm run over the flat fp32 vectors;
//                          weight gradients accumulate into fp32 through GEMMs with C fp32,
//                          beta = 1, and the fp32 dweight of RMSNorm and the embedding);
//   working params         bf16 copy of the master with the same element offsets (written by
//                          AdamW's lowp output, or by LlamaModel::sync_working_params());
//   activations, kv cache  bf16 (residual stream, norms, q/k/v, attention, MLP, backward
//                          buffers);
//   rstd, lse              fp32 (kept for the backwards);
//   logits chunk           fp32 (GEMM bf16 in, fp32 out: log-probs feed PPO ratios and the
//                          loss, where bf16 logits would cost ~3 significant digits); its
//                          gradient is rounded to a bf16 chunk for the two backward GEMMs;
//   score head             scores fp32; the bias add runs on the fp32 master bias.
// A CUDA model built for inference only (training = false: the reference, reward and cost
// models of PPO) has no optimizer step, so it keeps one bf16 copy of the parameters as its
// master (loaded straight into bf16) and no fp32 copy: 2 instead of 6 bytes per parameter.
#pragma once

#include "csrc/tensor.h"

namespace beaver::model {

struct PrecisionPlan {
  DType master = DType::F32;  // parameters as stored and updated
  DType grads = DType::F32;   // gradient accumulation
  DType work = DType::F32;    // parameters as the ops read them
  DType act = DType::F32;     // activations, backward buffers, KV cache
  DType logits = DType::F32;  // the LM head's logits chunk (and the logits the engine samples)
  // True when work != master: a separate working copy exists and must be kept in sync.
  bool working_copy() const { return work != master; }

  static PrecisionPlan for_device(Device d, bool training = true) {
    PrecisionPlan p;
    if (d == Device::CUDA) {
      p.work = DType::BF16;
      p.act = DType::BF16;
      if (!training) p.master = DType::BF16;
    }
    return p;
  }
};

}  // namespace beaver::model
