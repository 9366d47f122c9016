// Filling a LlamaModel from a checkpoint folder (and writing one back): a Beaver checkpoint (beaver.json) or a
// Hugging Face LLaMA folder (any of the layouts model/checkpoint.h reads). Stored tensors of
// any float dtype are converted to the model's master parameters (fp32; bf16 for a CUDA
// inference model), on the model's device (a CUDA model's bf16 working copy is refreshed).
//
// What may differ between the folder and the model:
//   - a score model built from a causal-LM checkpoint: the LM head is dropped and the score
//     head is fresh (LlamaModel::init_score_head(score_head_seed));
//   - a larger vocabulary in the model (e.g. 32000 → 32001 for the added <pad>): the new
//     rows of the embedding and of the untied LM head are the mean of the stored rows.
// Everything else (sizes, heads, tying) must agree; errors name the folder and the field. A
// stored tensor holding a NaN or an infinity is refused naming the tensor and the count (no
// stage trains from, and no command runs, a model that has already diverged).
#pragma once

#include <cstdint>
#include <string>

#include "model/config.h"
#include "model/llama.h"
#include "model/tokenizer.h"

namespace beaver::model {

// Config and kind of a checkpoint folder, without mapping its weights' data.
LlamaConfig checkpoint_config(const std::string& dir, ModelKind* kind = nullptr);

// The tokenizer.model of a model folder, checked against the model's config (cfg, from
// checkpoint_config): a missing file names the folder and what needs it; safe-rlhf's <pad> is
// added when the model's vocabulary is exactly one larger; a tokenizer with more pieces than
// the model is refused; a model with more ids than the tokenizer has pieces, and BOS / EOS /
// pad ids in the config that the tokenizer does not share, are warned about (each says what
// it breaks). `who` names the command in the messages ("generate", "train sft").
Tokenizer load_model_tokenizer(const std::string& dir, const LlamaConfig& cfg,
                               std::string_view who);

struct LoadReport {
  std::string source;            // "beaver checkpoint (bf16)", "model.safetensors", ...
  ModelKind stored_kind = ModelKind::CausalLM;
  bool fresh_score_head = false;
  int64_t added_vocab_rows = 0;
};

LoadReport load_weights(LlamaModel& m, const std::string& dir, uint64_t score_head_seed = 0);

// Writes the model's parameters as a Beaver checkpoint folder (kind from the model's head,
// tensors stored in `dtype`), copying the tokenizer files found in tokenizer_dir (may be empty).
// Parameters sharded (zero stage 3): a collective; every rank calls it, rank 0 gathers the
// units and writes, the others write nothing.
void save_weights(const LlamaModel& m, const std::string& dir, DType dtype = DType::F32,
                  const std::string& tokenizer_dir = "");

}  // namespace beaver::model
