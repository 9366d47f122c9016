// GPU cases of bench_model: generation through the inference engine on a LLaMA-7B-shaped model
// (H 4096, 32 layers, 32 heads of 128, I 11008, V 32000) with random weights (uniform, std
// ~0.02; norm weights 1), bf16 working params and KV cache (model/precision.h).
// Each case generates `new` tokens after a `prompt`-token prompt for B sequences (greedy, no
// EOS), once to warm up (and capture the decode CUDA graphs), then timed:
//   prefill tok/s   B * prompt / prefill time (forward + LM head on the last rows + sampling);
//   decode tok/s    B * (new - 1) / decode time (per step: graph replay, sampling, the token
//                   download that is the step's host sync);
//   %bound          decode tok/s against the bandwidth bound B / (weight bytes / copy rate):
//                   a decode step must read every bf16 weight once (13.5 GB), at the device-
//                   to-device copy rate measured in the same process (gpu_util.h);
//   prefill %gemm   2 * params * prefill tokens FLOPs (attention left out) per second as a share
//                   of the measured bf16 GEMM ceiling.
// The manual time of a case is its decode time per token. bench/hf_generate_baseline.py times
// HF transformers generate on the same shapes and prints the same columns.
// Memory (H100, 80 GB): an inference model keeps only bf16 params (13.5 GB) + KV cache (B=64,
// 512 rows) 17 GB + activations ~1.5 GB.
#include <string>
#include <vector>

#include "csrc/ops/elementwise.h"
#include "gpu_util.h"
#include "model/engine.h"
#include "model/llama.h"

namespace {

using namespace beaver;
using namespace beaver::bench;

model::LlamaConfig llama7b() {
  model::LlamaConfig c;
  c.hidden_size = 4096;
  c.intermediate_size = 11008;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 32;
  c.head_dim = 128;
  c.vocab_size = 32000;
  c.max_position_embeddings = 4096;
  c.rms_norm_eps = 1e-5;
  return c;
}

void gpu_llama7b_generate(benchmark::State& state) {
  auto ctx = gpu_or_skip(state);
  if (!ctx) return;
  const int64_t B = state.range(0), prompt = state.range(1), new_tokens = state.range(2);
  const bool graphs = state.range(3) != 0;
  model::LlamaModel m(*ctx, llama7b(), {model::Head::LM, B, prompt, false, false, 0});
  double n_params = 0;
  uint64_t seed = 1;
  for (const auto& p : m.params()) {
    n_params += double(p.shape.numel());
    if (p.is_norm)
      ops::fill(*ctx, m.param(p.name), 1.0f);
    else
      random_fill(*ctx, m.param(p.name), seed++, -0.035f, 0.035f);  // std 0.02
  }
  m.sync_working_params();
  model::InferenceEngine eng(m, prompt + new_tokens, graphs);
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(B));
  PhiloxStream rng(7, 1);
  for (auto& p : prompts) {
    p.resize(size_t(prompt));
    for (auto& t : p) t = int32_t(3 + rng.next_u32() % 31990u);
  }
  model::GenerateOptions go;
  go.sampling.temperature = 0.0f;
  go.max_new_tokens = new_tokens;
  go.eos_id = -1;
  (void)eng.generate(prompts, go);  // warm-up: cuBLASLt, scratch sizes, graph capture
  ctx->synchronize();
  model::GenerateStats before = eng.stats();
  for (auto _ : state) {
    benchmark::DoNotOptimize(eng.generate(prompts, go));
    const model::GenerateStats& s = eng.stats();
    const double dt = s.decode_s - before.decode_s;
    const double dtok = double(s.decode_tokens - before.decode_tokens);
    state.SetIterationTime(dtok > 0 ? dt / dtok : dt);
  }
  const model::GenerateStats& s = eng.stats();
  const double pre_tok = double(s.prefill_tokens - before.prefill_tokens);
  const double pre_s = s.prefill_s - before.prefill_s;
  const double dec_tok = double(s.decode_tokens - before.decode_tokens);
  const double dec_s = s.decode_s - before.decode_s;
  const double weight_bytes = 2.0 * n_params;  // bf16 working copy
  const double bound = double(B) * ceilings().copy_gbps * 1e9 / weight_bytes;
  const double dec_rate = dec_s > 0 ? dec_tok / dec_s : 0.0;
  const double pre_rate = pre_s > 0 ? pre_tok / pre_s : 0.0;
  state.counters["prefill tok/s"] = pre_rate;
  state.counters["decode tok/s"] = dec_rate;
  state.counters["bound tok/s"] = bound;
  state.counters["%bound"] = 100.0 * dec_rate / bound;
  state.counters["prefill %gemm"] =
      100.0 * 2.0 * n_params * pre_rate / 1e12 / ceilings().gemm_tflops;
  state.SetLabel(graphs ? "cuda graphs" : "eager decode");
}

}  // namespace

BEAVER_GPU_CEILINGS();
// Args: B, prompt, new tokens, CUDA graphs on/off. One timed generate per case (each is
// hundreds of steps), so the whole binary stays within gpu-check's time budget.
BENCHMARK(gpu_llama7b_generate)->Name("gpu_llama7b/generate_b1_p128_n384")
    ->Args({1, 128, 384, 1})->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(gpu_llama7b_generate)->Name("gpu_llama7b/generate_b1_p128_n128_eager")
    ->Args({1, 128, 128, 0})->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(gpu_llama7b_generate)->Name("gpu_llama7b/generate_b64_p128_n384")
    ->Args({64, 128, 384, 1})->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
