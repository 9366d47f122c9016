// LLaMA model configuration, read from and written to Hugging Face's config.json, and the table
// of tensors (name → shape) a checkpoint of that configuration must hold.
//
// Field names follow config.json. Absent optional fields take HF's defaults: num_key_value_heads
// = num_attention_heads, head_dim = hidden_size / num_attention_heads, rope_theta = 10000.
// rope_scaling is null or {rope_type (or type): "llama3", factor, low_freq_factor,
// high_freq_factor, original_max_position_embeddings}; transformers v5 writes the same keys,
// plus rope_theta, under rope_parameters, which is read too (and must agree with the legacy
// fields when both are present). Other scaling types are refused rather than silently ignored
// (they change every position's angle). Absent token ids take transformers' defaults (bos 1,
// eos 2, no pad); null or negative ones (some early LLaMA conversions wrote pad_token_id -1)
// are stored as -1, meaning none. torch_dtype (v5: dtype) is informational: checkpoints are
// trusted by their tensor headers. Every validation error names the file and the field.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "csrc/ops/rope.h"

namespace beaver::model {

// What sits on top of the decoder: a language-model head, or safe-rlhf's scalar score head
// (reward and cost models: score_head.weight [1, H], score_head.bias [1]).
enum class ModelKind { CausalLM, ScoreModel };
std::string_view kind_name(ModelKind k);  // "causal-lm" | "score-model"
ModelKind parse_kind(std::string_view s);

struct LlamaConfig {
  std::string architecture = "LlamaForCausalLM";
  int64_t hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0, num_attention_heads = 0,
          num_key_value_heads = 0, head_dim = 0, vocab_size = 0, max_position_embeddings = 0;
  double rms_norm_eps = 1e-6, rope_theta = 10000.0;
  ops::RopeScaling rope_scaling;  // llama3 == false: no scaling
  bool tie_word_embeddings = false;
  int64_t bos_token_id = 1, eos_token_id = 2, pad_token_id = -1;  // -1: none
  std::vector<int64_t> extra_eos_token_ids;  // Llama 3.1 lists several; the first is eos_token_id
  std::string torch_dtype;                   // informational only

  ModelKind kind() const;  // from the architecture
  // Throws naming `where` and the field when anything is inconsistent.
  void validate(const std::string& where) const;

  static LlamaConfig from_json(const nlohmann::json& j, const std::string& where);
  static LlamaConfig load(const std::string& path);  // a config.json
  nlohmann::json to_json() const;                    // HF form, loadable by transformers
};

// Accepted architectures: LlamaForCausalLM, and the safe-rlhf score models LlamaForScore /
// LlamaModelForScore.
bool is_known_architecture(std::string_view a);

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};
// Every tensor a checkpoint of `kind` must hold, in canonical order (embeddings, layers, final
// norm, head). Causal LMs have lm_head.weight unless tie_word_embeddings; score models have
// score_head.{weight,bias} and no lm_head.
std::vector<TensorSpec> expected_tensors(const LlamaConfig& c, ModelKind kind);

}  // namespace beaver::model
