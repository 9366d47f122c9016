// Loading the golden fixtures of tests/data/golden into a LlamaModel for the model tests.
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "csrc/safetensors.h"
#include "model/llama.h"

namespace beaver::model {

inline LlamaConfig fixture_config(const std::string& dir) {
  std::ifstream f(dir + "/config.json");
  BEAVER_CHECK(f.good(), "fixture: cannot open ", dir, "/config.json");
  const auto j = nlohmann::json::parse(f);
  LlamaConfig c;
  c.hidden_size = j.at("hidden_size");
  c.intermediate_size = j.at("intermediate_size");
  c.num_hidden_layers = j.at("num_hidden_layers");
  c.num_attention_heads = j.at("num_attention_heads");
  c.num_key_value_heads = j.at("num_key_value_heads");
  c.head_dim = j.at("head_dim");
  c.vocab_size = j.at("vocab_size");
  c.max_position_embeddings = j.at("max_position_embeddings");
  c.rms_norm_eps = j.at("rms_norm_eps");
  c.rope_theta = j.at("rope_theta");
  c.tie_word_embeddings = j.at("tie_word_embeddings");
  if (!j.at("rope_scaling").is_null()) {
    const auto& r = j.at("rope_scaling");
    c.rope_scaling.llama3 = true;
    c.rope_scaling.factor = r.at("factor");
    c.rope_scaling.low_freq_factor = r.at("low_freq_factor");
    c.rope_scaling.high_freq_factor = r.at("high_freq_factor");
    c.rope_scaling.original_max_position = r.at("original_max_position_embeddings");
  }
  return c;
}

// Copies every parameter the model has from dir/model.safetensors (an LM head in the file
// is ignored by a score-head model).
inline void load_fixture_weights(LlamaModel& m, const std::string& dir) {
  SafeTensorsFile f(dir + "/model.safetensors");
  for (const auto& p : m.params()) {
    if (p.name.rfind("score_head.", 0) == 0) continue;
    const auto& t = f.at(p.name);
    BEAVER_CHECK(Shape(t.shape) == p.shape, "fixture: ", p.name, " has shape ",
                 Shape(t.shape).str(), ", the model expects ", p.shape.str());
    copy_tensor(m.param(p.name), t.tensor());
  }
}

}  // namespace beaver::model
