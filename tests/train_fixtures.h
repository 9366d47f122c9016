// Fixtures for the training tests: a tiny world of synthetic, learnable data (SFT examples,
// separable helpfulness pairs, separable safety pairs), a sentencepiece tokenizer trained on it
// and a randomly initialised tiny LLaMA, all written into a temporary folder the way a user's
// files would be (Alpaca JSON, PKU-SafeRLHF JSONL, a Beaver checkpoint with tokenizer.model).
#pragma once

#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "csrc/context.h"
#include "csrc/philox.h"
#include "model/config.h"
#include "model/llama.h"
#include "model/loader.h"
#include "model/tokenizer.h"
#include "train/init_model.h"
#include "train/stages.h"

namespace beaver::test {

inline const std::vector<std::string>& tiny_topics() {
  static const std::vector<std::string> t = {"cats", "dogs", "bread", "trees", "boats",
                                             "rivers", "songs", "clocks"};
  return t;
}

// The prompts and answers of the tiny world; answer words depend on the topic (learnable).
inline std::string tiny_prompt(size_t i) {
  return "tell me about " + tiny_topics()[i % tiny_topics().size()];
}
inline std::string tiny_answer(size_t i) {
  static const char* adj[] = {"warm", "quick", "soft", "tall", "slow", "bright", "loud", "round"};
  const size_t k = i % tiny_topics().size();
  return " " + tiny_topics()[k] + " are " + adj[k] + " and " + adj[(k + 3) % 8] + ".";
}
// Helpful vs unhelpful, safe vs unsafe responses (separable by their words).
inline std::string tiny_good(size_t i) { return " " + tiny_topics()[i % 8] + " are good, I can help."; }
inline std::string tiny_bad(size_t i) { return " no idea, go away " + std::to_string(i % 3) + "."; }
inline std::string tiny_safe(size_t i) { return " I will not hurt " + tiny_topics()[i % 8] + ", stay safe."; }
inline std::string tiny_harm(size_t i) { return " harm the " + tiny_topics()[i % 8] + ", break steal hurt."; }

inline std::vector<std::string> tiny_corpus() {
  std::vector<std::string> lines;
  for (size_t i = 0; i < 24; ++i)
    for (const auto& s : {tiny_prompt(i), tiny_answer(i), tiny_good(i), tiny_bad(i), tiny_safe(i),
                          tiny_harm(i)})
      lines.push_back("BEGINNING OF CONVERSATION: USER: " + s + " ASSISTANT: </s>");
  return lines;
}

// Alpaca JSON array of n examples.
inline void write_tiny_sft(const std::string& path, size_t n, size_t offset = 0) {
  nlohmann::json arr = nlohmann::json::array();
  for (size_t i = offset; i < offset + n; ++i)
    arr.push_back({{"instruction", tiny_prompt(i)}, {"input", ""}, {"output", tiny_answer(i)}});
  std::ofstream(path) << arr.dump(1) << "\n";
}

// PKU-SafeRLHF JSONL of n records: response order and ids drawn from Philox; better = helpful,
// safer = safe; both labels consistent with the responses.
inline void write_tiny_pairs(const std::string& path, size_t n, uint64_t seed) {
  std::ofstream out(path);
  PhiloxStream rng(seed, 0x9a17);
  for (size_t i = 0; i < n; ++i) {
    const int better = rng.uniform() < 0.5f ? 0 : 1;
    const int safer = rng.uniform() < 0.5f ? 0 : 1;
    // helpfulness: response[better] helpful; harmlessness: response[safer] safe. Keep one text per
    // side: the better-and-safer response is helpful and safe when better == safer.
    std::string r[2];
    bool safe[2];
    for (int k = 0; k < 2; ++k) {
      const bool helpful = k == better, is_safe = k == safer;
      r[k] = is_safe ? (helpful ? tiny_good(i) + tiny_safe(i) : tiny_bad(i) + tiny_safe(i))
                     : (helpful ? tiny_good(i) + tiny_harm(i) : tiny_bad(i) + tiny_harm(i));
      safe[k] = is_safe;
    }
    nlohmann::ordered_json j;
    j["prompt"] = tiny_prompt(i);
    j["response_0"] = r[0];
    j["response_1"] = r[1];
    j["is_response_0_safe"] = safe[0];
    j["is_response_1_safe"] = safe[1];
    j["better_response_id"] = better;
    j["safer_response_id"] = safer;
    out << j.dump() << "\n";
  }
}

inline model::LlamaConfig tiny_config(int64_t vocab) {
  model::LlamaConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.vocab_size = vocab;
  c.max_position_embeddings = 64;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.pad_token_id = vocab - 1;
  return c;
}

// Writes dir/tokenizer.model (trained on the tiny corpus) and a random-init causal LM
// checkpoint (Beaver format) with it. Returns the model's vocabulary size (pieces + <pad>).
inline int64_t write_tiny_model(const std::string& dir, uint64_t seed, int vocab_pieces = 120) {
  const std::string proto = model::train_sentencepiece(tiny_corpus(), vocab_pieces);
  std::filesystem::create_directories(dir + "_tok");
  std::ofstream(dir + "_tok/tokenizer.model", std::ios::binary) << proto;
  const int64_t vocab = vocab_pieces + 1;
  Context ctx = Context::cpu(1);
  model::LlamaOptions o;
  o.max_batch = 1;
  o.max_seq = 1;
  o.training = false;
  model::LlamaModel m(ctx, tiny_config(vocab), o);
  train::random_init(m, seed);
  model::save_weights(m, dir, DType::F32, dir + "_tok");
  return vocab;
}

// The stage arguments every tiny-model stage test starts from: stage `s` on the model in
// <dir>/init, writing to <dir>/<out>, one thread, max_length 48, seed 3, no periodic log.
inline train::StageArgs tiny_stage_args(train::Stage s, const std::string& dir,
                                        const std::string& out) {
  train::StageArgs a;
  a.stage = s;
  a.model_name_or_path = dir + "/init";
  a.output_dir = dir + "/" + out;
  a.max_length = 48;
  a.threads = 1;
  a.seed = 3;
  a.log_interval = 1000;
  a.keep_checkpoints = 0;
  return a;
}

}  // namespace beaver::test
