// config.json ↔ LlamaConfig, validation, and the expected tensor table; see config.h.
#include "model/config.h"

#include <cmath>

#include "csrc/atomic_file.h"
#include "csrc/error.h"

namespace beaver::model {

using json = nlohmann::json;

std::string_view kind_name(ModelKind k) {
  return k == ModelKind::CausalLM ? "causal-lm" : "score-model";
}

ModelKind parse_kind(std::string_view s) {
  if (s == "causal-lm") return ModelKind::CausalLM;
  if (s == "score-model") return ModelKind::ScoreModel;
  BEAVER_FAIL("unknown model kind '", s, "' (expected causal-lm or score-model)");
}

bool is_known_architecture(std::string_view a) {
  return a == "LlamaForCausalLM" || a == "LlamaForScore" || a == "LlamaModelForScore";
}

ModelKind LlamaConfig::kind() const {
  return architecture == "LlamaForCausalLM" ? ModelKind::CausalLM : ModelKind::ScoreModel;
}

namespace {

// Readers that name the file and the field in every failure.
struct Fields {
  const json& j;
  const std::string& where;

  [[noreturn]] void bad(std::string_view key, const std::string& why) const {
    BEAVER_FAIL(where, ": field '", key, "' ", why);
  }
  bool present(std::string_view key) const {
    const auto it = j.find(key);
    return it != j.end() && !it->is_null();
  }
  int64_t integer(std::string_view key) const {
    if (!present(key)) bad(key, "is missing");
    const json& v = j.at(std::string(key));
    if (!v.is_number_integer()) bad(key, cat("must be an integer, got ", v.dump()));
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
      bad(key, cat("is out of range: ", v.dump()));
    return v.get<int64_t>();
  }
  int64_t integer(std::string_view key, int64_t dflt) const {
    return present(key) ? integer(key) : dflt;
  }
  double number(std::string_view key) const {
    if (!present(key)) bad(key, "is missing");
    const json& v = j.at(std::string(key));
    if (!v.is_number()) bad(key, cat("must be a number, got ", v.dump()));
    return v.get<double>();
  }
  double number(std::string_view key, double dflt) const {
    return present(key) ? number(key) : dflt;
  }
  bool boolean(std::string_view key, bool dflt) const {
    if (!present(key)) return dflt;
    const json& v = j.at(std::string(key));
    if (!v.is_boolean()) bad(key, cat("must be true or false, got ", v.dump()));
    return v.get<bool>();
  }
  // A token id: integer, null (→ -1), absent (→ HF's default) or, for eos, a list whose first
  // entry is the id.
  int64_t token(std::string_view key, int64_t absent, std::vector<int64_t>* extra = nullptr) const {
    if (j.find(key) == j.end()) return absent;
    if (!present(key)) return -1;
    const json& v = j.at(std::string(key));
    if (v.is_array() && extra) {
      if (v.empty()) return -1;
      for (const auto& e : v)
        if (!e.is_number_integer()) bad(key, cat("must hold integers, got ", v.dump()));
      for (size_t i = 1; i < v.size(); ++i) extra->push_back(v[i].get<int64_t>());
      return std::max<int64_t>(v[0].get<int64_t>(), -1);
    }
    return std::max<int64_t>(integer(key), -1);
  }
};

}  // namespace

LlamaConfig LlamaConfig::from_json(const json& j, const std::string& where) {
  BEAVER_CHECK(j.is_object(), where, ": config is not a JSON object");
  const Fields f{j, where};
  LlamaConfig c;
  if (!f.present("architectures")) f.bad("architectures", "is missing");
  const json& arch = j["architectures"];
  if (!arch.is_array() || arch.empty() || !arch[0].is_string())
    f.bad("architectures", cat("must be a list of architecture names, got ", arch.dump()));
  c.architecture = arch[0].get<std::string>();
  if (!is_known_architecture(c.architecture))
    f.bad("architectures", cat("names unknown architecture '", c.architecture,
                               "' (expected LlamaForCausalLM, LlamaForScore or "
                               "LlamaModelForScore)"));
  if (f.present("model_type") && j["model_type"] != "llama")
    f.bad("model_type", cat("is ", j["model_type"].dump(), ", expected \"llama\""));
  c.hidden_size = f.integer("hidden_size");
  c.intermediate_size = f.integer("intermediate_size");
  c.num_hidden_layers = f.integer("num_hidden_layers");
  c.num_attention_heads = f.integer("num_attention_heads");
  c.num_key_value_heads = f.integer("num_key_value_heads", c.num_attention_heads);
  if (!f.present("head_dim")) {
    if (c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads != 0)
      f.bad("head_dim", cat("is absent and hidden_size ", c.hidden_size,
                            " is not a multiple of num_attention_heads ",
                            c.num_attention_heads));
    c.head_dim = c.hidden_size / c.num_attention_heads;
  } else {
    c.head_dim = f.integer("head_dim");
  }
  c.rms_norm_eps = f.number("rms_norm_eps");
  c.rope_theta = f.number("rope_theta", 10000.0);
  // RoPE scaling: legacy `rope_scaling`, or transformers v5's `rope_parameters`, which also
  // carries rope_theta. Both may appear; they must then agree.
  auto parse_scaling = [&](std::string_view field, ops::RopeScaling* out) {
    const json& rs = j[std::string(field)];
    if (!rs.is_object()) f.bad(field, cat("must be null or an object, got ", rs.dump()));
    const std::string sub = cat(where, ": ", field);
    const Fields r{rs, sub};
    std::string type;
    for (const char* k : {"rope_type", "type"})
      if (r.present(k)) {
        if (!rs[k].is_string()) r.bad(k, "must be a string");
        type = rs[k].get<std::string>();
        break;
      }
    if (type == "llama3") {
      out->llama3 = true;
      out->factor = r.number("factor");
      out->low_freq_factor = r.number("low_freq_factor");
      out->high_freq_factor = r.number("high_freq_factor");
      out->original_max_position = r.integer("original_max_position_embeddings");
    } else if (!(type == "default" || (type.empty() && field == "rope_parameters"))) {
      f.bad(field, cat("has type '", type, "', which is not supported (only llama3 or default)"));
    }
  };
  if (f.present("rope_scaling")) parse_scaling("rope_scaling", &c.rope_scaling);
  if (f.present("rope_parameters")) {
    ops::RopeScaling p;
    parse_scaling("rope_parameters", &p);
    const Fields r{j["rope_parameters"], where};
    if (r.present("rope_theta")) {
      const double theta = r.number("rope_theta");
      if (f.present("rope_theta") && theta != c.rope_theta)
        f.bad("rope_parameters", cat("has rope_theta ", theta, " but field 'rope_theta' is ",
                                     c.rope_theta));
      c.rope_theta = theta;
    }
    if (f.present("rope_scaling")) {
      const auto& a = c.rope_scaling;
      if (a.llama3 != p.llama3 || a.factor != p.factor || a.low_freq_factor != p.low_freq_factor ||
          a.high_freq_factor != p.high_freq_factor ||
          a.original_max_position != p.original_max_position)
        f.bad("rope_parameters", "contradicts field 'rope_scaling'");
    }
    c.rope_scaling = p;
  }
  c.vocab_size = f.integer("vocab_size");
  c.max_position_embeddings = f.integer("max_position_embeddings");
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
  c.bos_token_id = f.token("bos_token_id", 1);  // transformers' LlamaConfig defaults
  c.eos_token_id = f.token("eos_token_id", 2, &c.extra_eos_token_ids);
  c.pad_token_id = f.token("pad_token_id", -1);
  for (const char* k : {"torch_dtype", "dtype"})  // transformers v5 renamed it to dtype
    if (f.present(k) && c.torch_dtype.empty()) {
      if (!j[k].is_string()) f.bad(k, "must be a string");
      c.torch_dtype = j[k].get<std::string>();
    }
  if (c.kind() == ModelKind::ScoreModel && f.present("score_dim") &&
      f.integer("score_dim") != 1)
    f.bad("score_dim", cat("is ", j["score_dim"].dump(), "; only scalar scores (1) are supported"));
  c.validate(where);
  return c;
}

void LlamaConfig::validate(const std::string& where) const {
  auto positive = [&](std::string_view name, int64_t v) {
    // The cap keeps every product of two sizes inside int64.
    BEAVER_CHECK(v > 0 && v <= (int64_t(1) << 31), where, ": field '", name,
                 "' must be a positive integer below 2^31, got ", v);
  };
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("num_key_value_heads", num_key_value_heads);
  positive("head_dim", head_dim);
  positive("vocab_size", vocab_size);
  positive("max_position_embeddings", max_position_embeddings);
  BEAVER_CHECK(is_known_architecture(architecture), where, ": field 'architectures': unknown '",
               architecture, "'");
  BEAVER_CHECK(num_attention_heads % num_key_value_heads == 0, where,
               ": field 'num_key_value_heads' (", num_key_value_heads,
               ") must divide num_attention_heads (", num_attention_heads, ")");
  BEAVER_CHECK(head_dim % 2 == 0, where, ": field 'head_dim' must be even for rotary "
               "embeddings, got ", head_dim);
  BEAVER_CHECK(std::isfinite(rms_norm_eps) && rms_norm_eps > 0, where,
               ": field 'rms_norm_eps' must be positive, got ", rms_norm_eps);
  BEAVER_CHECK(std::isfinite(rope_theta) && rope_theta > 0, where,
               ": field 'rope_theta' must be positive, got ", rope_theta);
  if (rope_scaling.llama3) {
    const auto& s = rope_scaling;
    BEAVER_CHECK(std::isfinite(s.factor) && s.factor > 0, where,
                 ": rope_scaling: field 'factor' must be positive, got ", s.factor);
    BEAVER_CHECK(std::isfinite(s.low_freq_factor) && s.low_freq_factor > 0, where,
                 ": rope_scaling: field 'low_freq_factor' must be positive, got ",
                 s.low_freq_factor);
    BEAVER_CHECK(std::isfinite(s.high_freq_factor) && s.high_freq_factor > s.low_freq_factor,
                 where, ": rope_scaling: field 'high_freq_factor' (", s.high_freq_factor,
                 ") must exceed low_freq_factor (", s.low_freq_factor, ")");
    BEAVER_CHECK(s.original_max_position > 0, where,
                 ": rope_scaling: field 'original_max_position_embeddings' must be positive, got ",
                 s.original_max_position);
  }
  auto token = [&](std::string_view name, int64_t id) {
    BEAVER_CHECK(id >= -1 && id < vocab_size, where, ": field '", name, "' (", id,
                 ") is outside the vocabulary of ", vocab_size);
  };
  token("bos_token_id", bos_token_id);
  token("eos_token_id", eos_token_id);
  token("pad_token_id", pad_token_id);
  for (int64_t id : extra_eos_token_ids) token("eos_token_id", id);
}

LlamaConfig LlamaConfig::load(const std::string& path) {
  const std::string text = read_text_file(path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    BEAVER_FAIL(path, ": not valid JSON: ", e.what());
  }
  return from_json(j, path);
}

json LlamaConfig::to_json() const {
  json j;
  j["architectures"] = json::array({architecture});
  j["model_type"] = "llama";
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  if (rope_scaling.llama3) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", rope_scaling.factor},
                         {"low_freq_factor", rope_scaling.low_freq_factor},
                         {"high_freq_factor", rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", rope_scaling.original_max_position}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["vocab_size"] = vocab_size;
  j["max_position_embeddings"] = max_position_embeddings;
  j["tie_word_embeddings"] = tie_word_embeddings;
  auto id = [](int64_t v) { return v < 0 ? json(nullptr) : json(v); };
  j["bos_token_id"] = id(bos_token_id);
  if (extra_eos_token_ids.empty()) {
    j["eos_token_id"] = id(eos_token_id);
  } else {
    json l = json::array({eos_token_id});
    for (int64_t e : extra_eos_token_ids) l.push_back(e);
    j["eos_token_id"] = l;
  }
  j["pad_token_id"] = id(pad_token_id);
  if (!torch_dtype.empty()) j["torch_dtype"] = torch_dtype;
  if (kind() == ModelKind::ScoreModel) {
    j["score_dim"] = 1;  // safe-rlhf's score models: one scalar per position, with a bias
    j["bias"] = true;
  }
  return j;
}

std::vector<TensorSpec> expected_tensors(const LlamaConfig& c, ModelKind kind) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  std::vector<TensorSpec> t;
  t.push_back({"model.embed_tokens.weight", {V, H}});
  for (int64_t n = 0; n < c.num_hidden_layers; ++n) {
    const std::string p = cat("model.layers.", n, ".");
    t.push_back({p + "input_layernorm.weight", {H}});
    t.push_back({p + "self_attn.q_proj.weight", {q, H}});
    t.push_back({p + "self_attn.k_proj.weight", {kv, H}});
    t.push_back({p + "self_attn.v_proj.weight", {kv, H}});
    t.push_back({p + "self_attn.o_proj.weight", {H, q}});
    t.push_back({p + "post_attention_layernorm.weight", {H}});
    t.push_back({p + "mlp.gate_proj.weight", {I, H}});
    t.push_back({p + "mlp.up_proj.weight", {I, H}});
    t.push_back({p + "mlp.down_proj.weight", {H, I}});
  }
  t.push_back({"model.norm.weight", {H}});
  if (kind == ModelKind::ScoreModel) {
    t.push_back({"score_head.weight", {1, H}});
    t.push_back({"score_head.bias", {1}});
  } else if (!c.tie_word_embeddings) {
    t.push_back({"lm_head.weight", {V, H}});
  }
  return t;
}

}  // namespace beaver::model
