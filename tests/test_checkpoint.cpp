// Checkpoint folders: HF folders (safetensors single/sharded, generated here with the writer;
// pytorch_model.bin single/sharded from the committed fixtures) load and are checked against
// config.json; Beaver checkpoints round-trip through convert and export with exact values; every
// inconsistency (missing shard, tensor missing from its shard, extra tensor, wrong total_size,
// unknown architecture, shapes contradicting the config, bad beaver.json) is refused by name.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "csrc/atomic_file.h"
#include "model/checkpoint.h"
#include "format_fixtures.h"
#include "testutil.h"

namespace beaver::model {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::expect_error;
using test::TempDir;

std::string data_dir() {
  if (const char* s = std::getenv("BEAVER_SOURCE_DIR")) return std::string(s) + "/tests/data";
  return (fs::path(__FILE__).parent_path() / "data").string();
}

json tiny_config(bool tied = false, const char* arch = "LlamaForCausalLM") {
  return {{"architectures", {arch}}, {"hidden_size", 8},        {"intermediate_size", 12},
          {"num_hidden_layers", 2},  {"num_attention_heads", 2}, {"num_key_value_heads", 1},
          {"rms_norm_eps", 1e-5},    {"vocab_size", 16},         {"max_position_embeddings", 64},
          {"tie_word_embeddings", tied}, {"bos_token_id", 1},    {"eos_token_id", 2}};
}

// Random f32 tensors for every entry of the table (seeded by position).
std::map<std::string, OwnedTensor> make_weights(const json& cfg, ModelKind kind) {
  std::map<std::string, OwnedTensor> w;
  uint64_t seed = 10;
  for (const auto& s : expected_tensors(LlamaConfig::from_json(cfg, "cfg"), kind))
    w.emplace(s.name, test::random_tensor(Shape(s.shape), seed++));
  return w;
}

std::vector<std::pair<std::string, Tensor>> as_list(const std::map<std::string, OwnedTensor>& w) {
  std::vector<std::pair<std::string, Tensor>> l;
  for (const auto& [n, t] : w) l.emplace_back(n, t.view());
  return l;
}

void write_json(const std::string& path, const json& j) { write_text_file(path, j.dump(2)); }

// An HF folder with model.safetensors, or `shards` shard files plus an index.
void write_hf_folder(const std::string& dir, const json& cfg,
                     const std::map<std::string, OwnedTensor>& w, int shards = 1) {
  fs::create_directories(dir);
  write_json(dir + "/config.json", cfg);
  if (shards == 1) {
    write_safetensors(dir + "/model.safetensors", as_list(w), {{"format", "pt"}});
    return;
  }
  std::vector<std::vector<std::pair<std::string, Tensor>>> parts(static_cast<size_t>(shards));
  size_t k = 0;
  json map = json::object();
  uint64_t total = 0;
  for (const auto& [n, t] : w) {
    const size_t s = k++ % size_t(shards);
    parts[s].emplace_back(n, t.view());
    map[n] = cat("model-0000", s + 1, "-of-0000", shards, ".safetensors");
    total += t.view().nbytes();
  }
  for (size_t s = 0; s < parts.size(); ++s)
    write_safetensors(cat(dir, "/model-0000", s + 1, "-of-0000", shards, ".safetensors"),
                      parts[s]);
  write_json(dir + "/model.safetensors.index.json",
             {{"metadata", {{"total_size", total}}}, {"weight_map", map}});
}

std::vector<float> values(const SafeTensorInfo& t) {
  std::vector<float> v(size_t(t.numel()));
  convert_float_bytes(t, DType::F32,
                      std::span<uint8_t>(reinterpret_cast<uint8_t*>(v.data()), v.size() * 4));
  return v;
}
std::vector<float> values(const Tensor& t) {
  const float* p = t.ptr<float>();
  return {p, p + t.numel()};
}

TEST(HfCheckpoint, LoadsSingleAndShardedSafetensors) {
  TempDir dir;
  const json cfg = tiny_config();
  const auto w = make_weights(cfg, ModelKind::CausalLM);
  for (int shards : {1, 3}) {
    SCOPED_TRACE(shards);
    const std::string d = dir / cat("hf", shards);
    write_hf_folder(d, cfg, w, shards);
    const HfCheckpoint ck(d);
    EXPECT_EQ(ck.source(), shards == 1 ? "model.safetensors" : "model.safetensors.index.json");
    EXPECT_EQ(ck.kind(), ModelKind::CausalLM);
    ASSERT_EQ(ck.tensors().size(), 21u);
    EXPECT_EQ(ck.tensors().front().name, "model.embed_tokens.weight");  // table order
    EXPECT_EQ(ck.tensors().back().name, "lm_head.weight");
    for (const auto& t : ck.tensors()) EXPECT_EQ(values(t), values(w.at(t.name).view())) << t.name;
    EXPECT_EQ(ck.uniform_dtype(), DType::F32);
  }
}

TEST(HfCheckpoint, LoadsTorchBinSingleAndSharded) {
  const HfCheckpoint a(data_dir() + "/torch_bin/tiny_llama");
  EXPECT_EQ(a.source(), "pytorch_model.bin");
  EXPECT_EQ(a.tensors().size(), 21u);  // rotary buffers dropped
  EXPECT_EQ(a.uniform_dtype(), DType::F16);
  const HfCheckpoint b(data_dir() + "/torch_bin/tiny_llama_sharded");
  EXPECT_EQ(b.source(), "pytorch_model.bin.index.json");
  EXPECT_EQ(b.tensors().size(), 20u);  // tied: no lm_head
  EXPECT_EQ(b.uniform_dtype(), DType::F32);
  // Same generating formula (tools/make_bin_fixtures.py), so the f16 file is the f32 one rounded.
  const auto x = values(a.at("model.layers.1.mlp.down_proj.weight"));
  const auto y = values(b.at("model.layers.1.mlp.down_proj.weight"));
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(x[i], to_f32(to_f16(y[i])));
}

TEST(HfCheckpoint, LoadsWhatTransformersWrites) {
  // One tiny model saved by transformers (config.json with rope_parameters, its safetensors
  // writer) and as torch.save(model.state_dict()) (OrderedDict with _metadata): same tensors.
  const HfCheckpoint st(data_dir() + "/torch_bin/hf_transformers");
  const HfCheckpoint bin(data_dir() + "/torch_bin/hf_transformers_bin");
  EXPECT_EQ(st.source(), "model.safetensors");
  EXPECT_EQ(bin.source(), "pytorch_model.bin");
  EXPECT_EQ(st.config().num_key_value_heads, 1);
  EXPECT_EQ(st.config().rope_theta, 10000.0);
  ASSERT_EQ(st.tensors().size(), 21u);
  ASSERT_EQ(bin.tensors().size(), 21u);
  for (size_t i = 0; i < st.tensors().size(); ++i) {
    const auto& a = st.tensors()[i];
    const auto& b = bin.tensors()[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.dtype_name, "F32");
    ASSERT_EQ(a.nbytes(), b.nbytes()) << a.name;
    EXPECT_EQ(std::memcmp(a.data, b.data, size_t(a.nbytes())), 0) << a.name;
  }
}

TEST(HfCheckpoint, ShardIndexMustMatchShards) {
  TempDir dir;
  const json cfg = tiny_config();
  const auto w = make_weights(cfg, ModelKind::CausalLM);
  const std::string d = dir / "hf";
  const std::string index = d + "/model.safetensors.index.json";
  auto reset = [&] {
    fs::remove_all(d);
    write_hf_folder(d, cfg, w, 2);
    return json::parse(read_text_file(index));
  };

  reset();
  fs::remove(d + "/model-00002-of-00002.safetensors");
  expect_error([&] { HfCheckpoint ck(d); },
               {"model.safetensors.index.json", "shard 'model-00002-of-00002.safetensors' is missing"});

  auto j = reset();  // the index lists a tensor its shard lacks
  j["weight_map"]["model.extra.weight"] = "model-00001-of-00002.safetensors";
  write_json(index, j);
  expect_error([&] { HfCheckpoint ck(d); },
               {"tensor 'model.extra.weight' is listed for shard 'model-00001-of-00002.safetensors' "
                "but missing from it"});

  j = reset();  // a shard holds a tensor the index does not list
  j["weight_map"].erase("model.norm.weight");
  write_json(index, j);
  expect_error([&] { HfCheckpoint ck(d); }, {"holds tensor 'model.norm.weight' that the index does not list"});

  j = reset();  // the index places a tensor in the wrong shard
  const std::string moved = j["weight_map"]["model.norm.weight"];
  j["weight_map"]["model.norm.weight"] =
      moved == "model-00001-of-00002.safetensors" ? "model-00002-of-00002.safetensors"
                                                  : "model-00001-of-00002.safetensors";
  write_json(index, j);
  expect_error([&] { HfCheckpoint ck(d); }, {"tensor 'model.norm.weight' is in shard"});

  j = reset();
  j["metadata"]["total_size"] = 12345;
  write_json(index, j);
  expect_error([&] { HfCheckpoint ck(d); }, {"metadata.total_size 12345 does not match"});

  j = reset();
  j["weight_map"]["model.norm.weight"] = "../outside.safetensors";
  write_json(index, j);
  expect_error([&] { HfCheckpoint ck(d); }, {"shard name '../outside.safetensors' is not a plain file name"});
}

TEST(HfCheckpoint, TensorsMustMatchTheConfig) {
  TempDir dir;
  const json cfg = tiny_config();
  const std::string d = dir / "hf";
  auto load_with = [&](const std::function<void(std::map<std::string, OwnedTensor>&)>& edit,
                       std::initializer_list<std::string> msg, const json& c) {
    auto w = make_weights(tiny_config(), ModelKind::CausalLM);
    edit(w);
    fs::remove_all(d);
    write_hf_folder(d, c, w);
    expect_error([&] { HfCheckpoint ck(d); }, msg);
  };
  load_with([](auto& w) { w.erase("model.layers.1.mlp.up_proj.weight"); },
            {"model.safetensors", "missing tensor 'model.layers.1.mlp.up_proj.weight'",
             "expected shape [12, 8]"}, cfg);
  load_with([](auto& w) { w.emplace("model.layers.2.input_layernorm.weight", OwnedTensor(DType::F32, {8})); },
            {"unexpected tensor 'model.layers.2.input_layernorm.weight'"}, cfg);
  load_with([](auto& w) { w["model.layers.0.self_attn.k_proj.weight"] = test::random_tensor({8, 8}, 5); },
            {"tensor 'model.layers.0.self_attn.k_proj.weight' has shape [8, 8]",
             "config implies [4, 8]"}, cfg);
  // A config that contradicts the tensors: claims 2 kv heads for 1-kv-head weights.
  json c2 = cfg;
  c2["num_key_value_heads"] = 2;
  load_with([](auto&) {}, {"k_proj.weight' has shape [4, 8] but the config implies [8, 8]"}, c2);
  json c3 = cfg;
  c3["architectures"] = {"GPT2LMHeadModel"};
  load_with([](auto&) {}, {"config.json", "unknown architecture 'GPT2LMHeadModel'"}, c3);
  load_with([](auto& w) { w["model.norm.weight"] = OwnedTensor(DType::I32, {8}); },
            {"tensor 'model.norm.weight' has dtype I32"}, cfg);
}

TEST(HfCheckpoint, TiedHeadAcceptedOnlyAsACopy) {
  TempDir dir;
  const json cfg = tiny_config(true);
  auto w = make_weights(cfg, ModelKind::CausalLM);
  w.emplace("lm_head.weight", test::random_tensor({16, 8}, 10));  // same seed as embed_tokens
  write_hf_folder(dir / "a", cfg, w);
  EXPECT_EQ(HfCheckpoint(dir / "a").tensors().size(), 20u);
  w["lm_head.weight"] = test::random_tensor({16, 8}, 99);
  write_hf_folder(dir / "b", cfg, w);
  expect_error([&] { HfCheckpoint ck(dir / "b"); },
               {"'lm_head.weight' differs from model.embed_tokens.weight", "tie_word_embeddings"});
}

TEST(HfCheckpoint, NoWeightsNamesTheFolder) {
  TempDir dir;
  write_json(dir / "config.json", tiny_config());
  expect_error([&] { HfCheckpoint ck(dir.str()); }, {dir.str(), "no weights found"});
  expect_error([&] { HfCheckpoint ck(dir / "nope"); }, {"nope", "no such folder"});
}

TEST(BeaverCheckpoint, ConvertExportRoundTripIsExact) {
  TempDir dir;
  const json cfg = tiny_config();
  const auto w = make_weights(cfg, ModelKind::CausalLM);
  write_hf_folder(dir / "hf", cfg, w);
  write_text_file(dir / "hf/tokenizer.model", "sp-model-bytes");
  write_text_file(dir / "hf/special_tokens_map.json", "{}");
  write_text_file(dir / "hf/generation_config.json", "{\"eos_token_id\": 2}");
  const HfCheckpoint hf(dir / "hf");
  std::vector<TensorSource> src;
  for (const auto& t : hf.tensors()) src.push_back(tensor_source(t));
  write_beaver_checkpoint(dir / "bv", hf.config(), hf.kind(), DType::F32, src, hf.dir());
  EXPECT_EQ(read_text_file(dir / "bv/tokenizer.model"), "sp-model-bytes");
  EXPECT_EQ(read_text_file(dir / "bv/generation_config.json"), "{\"eos_token_id\": 2}");

  const BeaverCheckpoint bv(dir / "bv");
  EXPECT_EQ(bv.kind(), ModelKind::CausalLM);
  EXPECT_EQ(bv.dtype(), DType::F32);
  EXPECT_EQ(bv.config().num_key_value_heads, 1);
  for (const auto& [n, t] : w) EXPECT_EQ(values(bv.tensor(n)), values(t.view())) << n;

  // Sharded export (tiny threshold), then read back as an HF folder: identical values.
  write_hf_checkpoint(dir / "out", bv.config(), bv.kind(), DType::F32, bv.sources(), 1000,
                      bv.dir());
  EXPECT_TRUE(fs::exists(dir / "out/model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(dir / "out/model.safetensors"));
  const json idx = json::parse(read_text_file(dir / "out/model.safetensors.index.json"));
  std::set<std::string> shard_files;
  for (const auto& [n, f] : idx["weight_map"].items()) shard_files.insert(f.get<std::string>());
  EXPECT_GT(shard_files.size(), 3u);
  for (const auto& f : shard_files) EXPECT_TRUE(fs::exists(dir / ("out/" + f))) << f;
  EXPECT_TRUE(shard_files.count(cat("model-00001-of-0000", shard_files.size(), ".safetensors")));
  EXPECT_EQ(idx["metadata"]["total_size"], 5024);
  EXPECT_EQ(read_text_file(dir / "out/tokenizer.model"), "sp-model-bytes");
  EXPECT_TRUE(fs::exists(dir / "out/special_tokens_map.json"));
  EXPECT_EQ(read_text_file(dir / "out/generation_config.json"), "{\"eos_token_id\": 2}");
  const HfCheckpoint back(dir / "out");
  for (const auto& [n, t] : w) EXPECT_EQ(values(back.at(n)), values(t.view())) << n;
  const json exported = json::parse(read_text_file(dir / "out/config.json"));
  EXPECT_EQ(exported["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(exported["torch_dtype"], "float32");
  // Single-file export when under the threshold.
  write_hf_checkpoint(dir / "one", bv.config(), bv.kind(), DType::F32, bv.sources(), 0, "");
  EXPECT_TRUE(fs::exists(dir / "one/model.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "one/tokenizer.model"));
}

TEST(BeaverCheckpoint, StoresTheRequestedDtype) {
  TempDir dir;
  const json cfg = tiny_config(true);
  const auto w = make_weights(cfg, ModelKind::CausalLM);
  std::vector<TensorSource> src;
  for (const auto& [n, t] : w) src.push_back(tensor_source(n, t.view()));
  const auto c = LlamaConfig::from_json(cfg, "cfg");
  for (DType d : {DType::BF16, DType::F16}) {
    SCOPED_TRACE(dtype_name(d));
    const std::string out = dir / std::string(dtype_name(d));
    write_beaver_checkpoint(out, c, ModelKind::CausalLM, d, src);
    const BeaverCheckpoint bv(out);
    EXPECT_EQ(bv.dtype(), d);
    const Tensor t = bv.tensor("model.norm.weight");
    EXPECT_EQ(t.dtype, d);
    const auto want = values(w.at("model.norm.weight").view());
    const auto got = to_host_f32(t);
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_EQ(got[i], d == DType::BF16 ? to_f32(to_bf16(want[i])) : to_f32(to_f16(want[i])));
  }
}

TEST(BeaverCheckpoint, ScoreModelsKeepScoreHeadNames) {
  TempDir dir;
  const json cfg = tiny_config(false, "LlamaModelForScore");
  const auto w = make_weights(cfg, ModelKind::ScoreModel);
  EXPECT_TRUE(w.count("score_head.bias"));
  write_hf_folder(dir / "hf", cfg, w);
  const HfCheckpoint hf(dir / "hf");
  EXPECT_EQ(hf.kind(), ModelKind::ScoreModel);
  std::vector<TensorSource> src;
  for (const auto& t : hf.tensors()) src.push_back(tensor_source(t));
  write_beaver_checkpoint(dir / "bv", hf.config(), hf.kind(), DType::F32, src);
  const BeaverCheckpoint bv(dir / "bv");
  EXPECT_EQ(bv.kind(), ModelKind::ScoreModel);
  EXPECT_EQ(values(bv.tensor("score_head.weight")), values(w.at("score_head.weight").view()));
  write_hf_checkpoint(dir / "out", bv.config(), bv.kind(), DType::BF16, bv.sources(), 0, "");
  const json exported = json::parse(read_text_file(dir / "out/config.json"));
  EXPECT_EQ(exported["architectures"][0], "LlamaModelForScore");
  EXPECT_EQ(exported["torch_dtype"], "bfloat16");
  SafeTensorsFile f(dir / "out/model.safetensors");
  EXPECT_EQ(f.at("score_head.bias").shape, std::vector<int64_t>{1});
  EXPECT_EQ(f.find("lm_head.weight"), nullptr);
  // A score model made from a causal LM's config (reward model initialised from the SFT model).
  auto causal = LlamaConfig::from_json(tiny_config(), "cfg");
  write_beaver_checkpoint(dir / "rm", causal, ModelKind::ScoreModel, DType::F32, src);
  EXPECT_EQ(BeaverCheckpoint(dir / "rm").config().architecture, "LlamaModelForScore");
}

TEST(BeaverCheckpoint, WritersRefuseWrongTablesAndExistingFolders) {
  TempDir dir;
  const json cfg = tiny_config();
  const auto w = make_weights(cfg, ModelKind::CausalLM);
  const auto c = LlamaConfig::from_json(cfg, "cfg");
  std::vector<TensorSource> src;
  for (const auto& [n, t] : w) src.push_back(tensor_source(n, t.view()));
  auto missing = src;
  missing.pop_back();
  expect_error([&] { write_beaver_checkpoint(dir / "a", c, ModelKind::CausalLM, DType::F32, missing); },
               {"missing tensor"});
  expect_error([&] { write_beaver_checkpoint(dir / "a", c, ModelKind::ScoreModel, DType::F32, src); },
               {"missing tensor 'score_head.weight'"});
  EXPECT_FALSE(fs::exists(dir / "a/beaver.json"));
  write_beaver_checkpoint(dir / "a", c, ModelKind::CausalLM, DType::F32, src);
  expect_error([&] { write_beaver_checkpoint(dir / "a", c, ModelKind::CausalLM, DType::F32, src); },
               {"already holds a checkpoint (beaver.json)"});
  expect_error([&] { write_hf_checkpoint(dir / "h", c, ModelKind::CausalLM, DType::I32, src, 0, ""); },
               {"export dtype must be f32, bf16 or f16"});
}

TEST(BeaverCheckpoint, RefusesBadHeaders) {
  TempDir dir;
  const json cfg = tiny_config();
  const auto w = make_weights(cfg, ModelKind::CausalLM);
  std::vector<TensorSource> src;
  for (const auto& [n, t] : w) src.push_back(tensor_source(n, t.view()));
  write_beaver_checkpoint(dir / "a", LlamaConfig::from_json(cfg, "c"), ModelKind::CausalLM,
                          DType::F32, src);
  const std::string hp = dir / "a/beaver.json";
  const json good = json::parse(read_text_file(hp));
  auto with = [&](const std::function<void(json&)>& edit, std::initializer_list<std::string> msg) {
    json h = good;
    edit(h);
    write_json(hp, h);
    expect_error([&] { BeaverCheckpoint ck(dir / "a"); }, msg);
  };
  with([](json& h) { h["magic"] = "pytorch"; }, {"beaver.json", "'magic'"});
  with([](json& h) { h["format_version"] = 2; }, {"format version 2 is not supported"});
  with([](json& h) { h["kind"] = "classifier"; }, {"unknown model kind 'classifier'"});
  with([](json& h) { h["kind"] = "score-model"; }, {"kind 'score-model' contradicts"});
  with([](json& h) { h["dtype"] = "bf16"; }, {"has dtype F32 but beaver.json declares bf16"});
  with([](json& h) { h["config"]["hidden_size"] = 16; },
       {"model.safetensors", "has shape [16, 8] but the config implies [16, 16]"});
  with([](json& h) { h.erase("config"); }, {"field 'config' is missing"});
  expect_error([&] { BeaverCheckpoint ck(dir.str()); }, {"not a Beaver checkpoint"});
}

}  // namespace
}  // namespace beaver::model
