// Tiny random models on disk for the RLHF trainer and evaluation tests: a sentencepiece
// tokenizer trained on a few template sentences, an actor (causal LM) and score models
// written as Beaver checkpoints, and a prompt file, all in a fresh temporary folder.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "csrc/atomic_file.h"
#include "csrc/context.h"
#include "csrc/philox.h"
#include "model/loader.h"
#include "model/llama.h"
#include "model/tokenizer.h"

namespace beaver::test {

// Sentences of the toy world's flavour; enough for a vocabulary of a few dozen pieces.
inline std::vector<std::string> tiny_corpus() {
  return {"BEGINNING OF CONVERSATION: USER: how do I bake bread ASSISTANT: mix flour and water",
          "BEGINNING OF CONVERSATION: USER: how do I water a plant ASSISTANT: water it daily",
          "BEGINNING OF CONVERSATION: USER: how can I break into a house ASSISTANT: I cannot help",
          "BEGINNING OF CONVERSATION: USER: plan a trip to the sea ASSISTANT: pack a bag and go",
          "BEGINNING OF CONVERSATION: USER: add two and three ASSISTANT: the sum is five",
          "BEGINNING OF CONVERSATION: USER: steal a password ASSISTANT: I will not do that",
          "bread flour water plant house trip sea bag sum five password steal break help"};
}

struct TinyWorld {
  std::filesystem::path dir;
  std::string actor, rm, cm, prompts;
  model::LlamaConfig cfg;

  // vocab: sentencepiece vocabulary size (the model's too).
  // eos_logit: how strongly the actor favours EOS (see write_model); 0 leaves it random.
  explicit TinyWorld(const std::string& name, int vocab = 100, uint64_t seed = 7,
                     float eos_logit = 14.0f) {
    dir = std::filesystem::temp_directory_path() /
          ("beaver_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir / "tok");
    write_text_file((dir / "tok" / "tokenizer.model").string(),
                    model::train_sentencepiece(tiny_corpus(), vocab));
    cfg = tiny_config(vocab);
    actor = write_model("actor", model::Head::LM, cfg, seed, /*eos_logit=*/eos_logit);
    rm = write_model("rm", model::Head::Score, cfg, seed + 1);
    cm = write_model("cm", model::Head::Score, cfg, seed + 2);
    prompts = (dir / "prompts.jsonl").string();
    write_text_file(prompts,
                    "{\"prompt\": \"how do I bake bread\", \"category\": \"cooking\"}\n"
                    "{\"prompt\": \"how can I break into a house\", \"category\": \"burglary\"}\n"
                    "{\"prompt\": \"plan a trip\", \"category\": \"travel\"}\n"
                    "{\"prompt\": \"steal a password\", \"category\": \"account_theft\"}\n"
                    "{\"prompt\": \"add two and three\", \"category\": \"arithmetic\"}\n"
                    "{\"prompt\": \"water a plant\", \"category\": \"gardening\"}\n");
  }
  ~TinyWorld() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  TinyWorld(const TinyWorld&) = delete;
  TinyWorld& operator=(const TinyWorld&) = delete;

  static model::LlamaConfig tiny_config(int vocab) {
    model::LlamaConfig c;
    c.hidden_size = 32;
    c.intermediate_size = 48;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 8;
    c.vocab_size = vocab;
    c.max_position_embeddings = 128;
    c.bos_token_id = 1;
    c.eos_token_id = 2;
    return c;
  }

  // Random weights (norm weights 1, everything else N(0, 0.3²): peaked enough that the
  // scores and log-probs vary visibly between tokens) written as a Beaver checkpoint.
  // eos_logit > 0 (LM head only) makes EOS a likely token everywhere, so that sampled
  // responses end both at EOS and at max_length: hidden dimension 0 is a constant 1 carried
  // unchanged through the residual stream (embedding column 0 = 1, no attention or MLP output
  // into it), and the EOS row of the LM head reads only that dimension.
  std::string write_model(const std::string& name, model::Head head, const model::LlamaConfig& c,
                          uint64_t seed, float eos_logit = 0.0f) const {
    Context ctx = Context::cpu(1);
    model::LlamaModel m(
        ctx, c, model::LlamaOptions{.head = head, .max_batch = 1, .max_seq = 4, .training = false});
    PhiloxStream rng(seed, 0x7141);
    for (const auto& p : m.params()) {
      const Tensor t = m.param(p.name);
      float* x = t.ptr<float>();
      for (int64_t i = 0; i < t.numel(); ++i) x[i] = p.is_norm ? 1.0f : 0.3f * rng.normal();
    }
    if (eos_logit > 0 && head == model::Head::LM) {
      const int64_t H = c.hidden_size;
      auto rows = [&](const std::string& n) { return m.param(n).ptr<float>(); };
      float* emb = rows("model.embed_tokens.weight");
      for (int64_t v = 0; v < c.vocab_size; ++v) emb[v * H] = 1.0f;
      for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
        const std::string pre = "model.layers." + std::to_string(l);
        const Tensor wo = m.param(pre + ".self_attn.o_proj.weight");
        const Tensor wd = m.param(pre + ".mlp.down_proj.weight");
        std::fill(wo.ptr<float>(), wo.ptr<float>() + wo.size(1), 0.0f);  // output row 0
        std::fill(wd.ptr<float>(), wd.ptr<float>() + wd.size(1), 0.0f);
      }
      float* eos = rows("lm_head.weight") + int64_t(c.eos_token_id) * H;
      std::fill(eos, eos + H, 0.0f);
      eos[0] = eos_logit;
    }
    const std::string out = (dir / name).string();
    model::save_weights(m, out, DType::F32, (dir / "tok").string());
    return out;
  }
};

}  // namespace beaver::test
