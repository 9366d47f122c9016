// LlamaConfig: HF config.json parsing with defaults, round trip through to_json, validation
// errors naming the field, and the expected tensor tables.
#include <gtest/gtest.h>

#include "model/config.h"
#include "format_fixtures.h"

namespace beaver::model {
namespace {

using nlohmann::json;
using test::expect_error;

json tinyllama() {  // TinyLlama-1.1B's config.json (abridged)
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
    "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
    "num_key_value_heads": 4, "rms_norm_eps": 1e-05, "rope_scaling": null,
    "rope_theta": 10000.0, "vocab_size": 32000, "max_position_embeddings": 2048,
    "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2,
    "torch_dtype": "bfloat16", "hidden_act": "silu"})");
}

TEST(LlamaConfig, ParsesTinyLlama) {
  const auto c = LlamaConfig::from_json(tinyllama(), "config.json");
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_FALSE(c.rope_scaling.llama3);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.pad_token_id, -1);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.kind(), ModelKind::CausalLM);
}

TEST(LlamaConfig, AppliesHfDefaults) {
  auto j = tinyllama();
  j.erase("num_key_value_heads");
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j.erase("tie_word_embeddings");
  j.erase("bos_token_id");
  j["pad_token_id"] = -1;  // as early LLaMA conversions wrote
  const auto c = LlamaConfig::from_json(j, "config.json");
  EXPECT_EQ(c.num_key_value_heads, 32);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);  // transformers' default when absent
  EXPECT_EQ(c.pad_token_id, -1);
  j["bos_token_id"] = nullptr;  // explicitly none
  j.erase("eos_token_id");
  const auto d = LlamaConfig::from_json(j, "config.json");
  EXPECT_EQ(d.bos_token_id, -1);
  EXPECT_EQ(d.eos_token_id, 2);
  EXPECT_TRUE(d.to_json()["bos_token_id"].is_null());
}

TEST(LlamaConfig, ParsesLlama3RopeScalingAndEosList) {
  auto j = tinyllama();
  j["rope_theta"] = 500000;
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  j["vocab_size"] = 128256;
  j["eos_token_id"] = {128001, 128008, 128009};
  j["head_dim"] = 128;
  auto c = LlamaConfig::from_json(j, "config.json");
  EXPECT_TRUE(c.rope_scaling.llama3);
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position, 8192);
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.eos_token_id, 128001);
  EXPECT_EQ(c.extra_eos_token_ids, (std::vector<int64_t>{128008, 128009}));
  // The older spelling "type" works too.
  j["rope_scaling"].erase("rope_type");
  j["rope_scaling"]["type"] = "llama3";
  EXPECT_TRUE(LlamaConfig::from_json(j, "config.json").rope_scaling.llama3);
}

TEST(LlamaConfig, ReadsTransformersV5RopeParameters) {
  // As transformers 5 saves a Llama 3 config: theta and scaling under rope_parameters.
  auto j = tinyllama();
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j.erase("torch_dtype");
  j["dtype"] = "bfloat16";
  j["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 8.0},
                          {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 8192}};
  const auto c = LlamaConfig::from_json(j, "config.json");
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_TRUE(c.rope_scaling.llama3);
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  // Legacy fields written back agree with the v5 ones, so both together parse.
  auto both = j;
  both.update(c.to_json());
  EXPECT_EQ(LlamaConfig::from_json(both, "config.json").rope_theta, 500000.0);
  auto dflt = tinyllama();
  dflt["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 10000.0}};
  EXPECT_FALSE(LlamaConfig::from_json(dflt, "config.json").rope_scaling.llama3);
  auto clash = j;
  clash["rope_theta"] = 10000.0;
  expect_error([&] { LlamaConfig::from_json(clash, "config.json"); },
               {"'rope_parameters' has rope_theta 500000 but field 'rope_theta' is 10000"});
  clash = j;
  clash["rope_scaling"] = nullptr;
  clash["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 4.0}, {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  expect_error([&] { LlamaConfig::from_json(clash, "config.json"); },
               {"'rope_parameters' contradicts field 'rope_scaling'"});
  auto yarn = tinyllama();
  yarn["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  expect_error([&] { LlamaConfig::from_json(yarn, "config.json"); },
               {"'rope_parameters' has type 'yarn'"});
}

TEST(LlamaConfig, RoundTripsThroughJson) {
  auto j = tinyllama();
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 32.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  j["eos_token_id"] = {2, 7};
  j["pad_token_id"] = 0;
  j["tie_word_embeddings"] = true;
  const auto a = LlamaConfig::from_json(j, "a");
  const auto b = LlamaConfig::from_json(a.to_json(), "b");
  EXPECT_EQ(a.to_json(), b.to_json());
  EXPECT_EQ(b.rope_scaling.factor, 32.0);
  EXPECT_EQ(b.extra_eos_token_ids, std::vector<int64_t>{7});
  EXPECT_EQ(b.pad_token_id, 0);
  EXPECT_TRUE(b.tie_word_embeddings);
  EXPECT_EQ(b.num_key_value_heads, 4);
  EXPECT_TRUE(a.to_json()["bos_token_id"].is_number());
  auto none = tinyllama();
  EXPECT_TRUE(LlamaConfig::from_json(none, "c").to_json()["pad_token_id"].is_null());
  EXPECT_TRUE(LlamaConfig::from_json(none, "c").to_json()["rope_scaling"].is_null());
}

TEST(LlamaConfig, ScoreModelArchitectures) {
  auto j = tinyllama();
  j["architectures"] = {"LlamaModelForScore"};
  j["score_dim"] = 1;
  const auto c = LlamaConfig::from_json(j, "config.json");
  EXPECT_EQ(c.kind(), ModelKind::ScoreModel);
  EXPECT_EQ(c.to_json()["architectures"][0], "LlamaModelForScore");
  j["score_dim"] = 2;
  expect_error([&] { LlamaConfig::from_json(j, "config.json"); }, {"'score_dim'"});
}

void expect_bad(json j, std::initializer_list<std::string> msg) {
  std::vector<std::string> want{"cfg.json"};
  want.insert(want.end(), msg.begin(), msg.end());
  try {
    LlamaConfig::from_json(j, "cfg.json");
    ADD_FAILURE() << "accepted " << j.dump();
  } catch (const Error& e) {
    for (const auto& s : want)
      EXPECT_NE(std::string(e.what()).find(s), std::string::npos)
          << "lacks '" << s << "': " << e.what();
  }
}

TEST(LlamaConfig, ValidationNamesTheField) {
  auto j = tinyllama();
  j["architectures"] = {"MistralForCausalLM"};
  expect_bad(j, {"'architectures'", "unknown architecture 'MistralForCausalLM'"});
  j = tinyllama();
  j.erase("architectures");
  expect_bad(j, {"'architectures' is missing"});
  j = tinyllama();
  j["model_type"] = "gpt2";
  expect_bad(j, {"'model_type'"});
  j = tinyllama();
  j.erase("hidden_size");
  expect_bad(j, {"'hidden_size' is missing"});
  j = tinyllama();
  j["hidden_size"] = "2048";
  expect_bad(j, {"'hidden_size' must be an integer"});
  j = tinyllama();
  j["intermediate_size"] = -5;
  expect_bad(j, {"'intermediate_size' must be a positive integer"});
  j = tinyllama();
  j["num_key_value_heads"] = 5;
  expect_bad(j, {"'num_key_value_heads' (5) must divide num_attention_heads (32)"});
  j = tinyllama();
  j["num_attention_heads"] = 30;
  expect_bad(j, {"'head_dim' is absent", "not a multiple"});
  j = tinyllama();
  j["head_dim"] = 63;
  expect_bad(j, {"'head_dim' must be even"});
  j = tinyllama();
  j["rms_norm_eps"] = 0;
  expect_bad(j, {"'rms_norm_eps' must be positive"});
  j = tinyllama();
  j["rope_theta"] = -1.0;
  expect_bad(j, {"'rope_theta' must be positive"});
  j = tinyllama();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  expect_bad(j, {"'rope_scaling'", "type 'linear'", "not supported"});
  j = tinyllama();
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  expect_bad(j, {"rope_scaling", "'low_freq_factor' is missing"});
  j = tinyllama();
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 4.0},
                       {"high_freq_factor", 1.0}, {"original_max_position_embeddings", 8192}};
  expect_bad(j, {"'high_freq_factor' (1) must exceed low_freq_factor (4)"});
  j = tinyllama();
  j["rope_scaling"] = 3;
  expect_bad(j, {"'rope_scaling' must be null or an object"});
  j = tinyllama();
  j["eos_token_id"] = 32000;
  expect_bad(j, {"'eos_token_id' (32000) is outside the vocabulary of 32000"});
  j = tinyllama();
  j["tie_word_embeddings"] = 1;
  expect_bad(j, {"'tie_word_embeddings' must be true or false"});
  j = tinyllama();
  j["vocab_size"] = 1.5;
  expect_bad(j, {"'vocab_size' must be an integer"});
}

TEST(LlamaConfig, LoadNamesTheFile) {
  test::TempDir dir;
  const std::string p = dir / "config.json";
  test::write_bytes(p, {'{', 'x'});
  expect_error([&] { LlamaConfig::load(p); }, {"config.json", "not valid JSON"});
  expect_error([&] { LlamaConfig::load(dir / "absent.json"); }, {"absent.json", "cannot open"});
}

TEST(ExpectedTensors, CausalLmTables) {
  auto c = LlamaConfig::from_json(tinyllama(), "c");
  auto t = expected_tensors(c, ModelKind::CausalLM);
  ASSERT_EQ(t.size(), 1 + 22 * 9 + 2u);
  EXPECT_EQ(t.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(t.front().shape, (std::vector<int64_t>{32000, 2048}));
  EXPECT_EQ(t[3].name, "model.layers.0.self_attn.k_proj.weight");
  EXPECT_EQ(t[3].shape, (std::vector<int64_t>{256, 2048}));  // GQA: 4 kv heads x 64
  EXPECT_EQ(t[5].name, "model.layers.0.self_attn.o_proj.weight");
  EXPECT_EQ(t[5].shape, (std::vector<int64_t>{2048, 2048}));
  EXPECT_EQ(t[9].name, "model.layers.0.mlp.down_proj.weight");
  EXPECT_EQ(t[9].shape, (std::vector<int64_t>{2048, 5632}));
  EXPECT_EQ(t.back().name, "lm_head.weight");
  c.tie_word_embeddings = true;
  t = expected_tensors(c, ModelKind::CausalLM);
  EXPECT_EQ(t.size(), 1 + 22 * 9 + 1u);
  EXPECT_EQ(t.back().name, "model.norm.weight");
}

TEST(ExpectedTensors, ScoreModelTable) {
  const auto c = LlamaConfig::from_json(tinyllama(), "c");
  const auto t = expected_tensors(c, ModelKind::ScoreModel);
  ASSERT_EQ(t.size(), 1 + 22 * 9 + 3u);
  EXPECT_EQ(t[t.size() - 2].name, "score_head.weight");
  EXPECT_EQ(t[t.size() - 2].shape, (std::vector<int64_t>{1, 2048}));
  EXPECT_EQ(t.back().name, "score_head.bias");
  EXPECT_EQ(t.back().shape, std::vector<int64_t>{1});
  for (const auto& s : t) EXPECT_NE(s.name, "lm_head.weight");
}

}  // namespace
}  // namespace beaver::model
