// Checkpoint folder → LlamaModel parameters (see loader.h for what may differ).
#include "model/loader.h"

#include <filesystem>
#include <optional>
#include <span>

#include "csrc/log.h"
#include "model/checkpoint.h"
#include "model/tokenizer.h"

namespace beaver::model {

namespace {

bool is_beaver_dir(const std::string& dir) {
  return std::filesystem::exists(std::filesystem::path(dir) / "beaver.json");
}

// Stored tensor → host tensor of the stored shape in dtype d (the model's master dtype).
OwnedTensor to_dtype(const SafeTensorInfo& t, DType d) {
  OwnedTensor out(d, Shape(t.shape));
  convert_float_bytes(t, d,
                      std::span<uint8_t>(static_cast<uint8_t*>(out.view().data), out.view().nbytes()));
  return out;
}

}  // namespace

LlamaConfig checkpoint_config(const std::string& dir, ModelKind* kind) {
  require_model_folder(dir);
  if (is_beaver_dir(dir)) {
    BeaverCheckpoint ck(dir);
    if (kind) *kind = ck.kind();
    return ck.config();
  }
  const LlamaConfig c = LlamaConfig::load((std::filesystem::path(dir) / "config.json").string());
  if (kind) *kind = c.kind();
  return c;
}

Tokenizer load_model_tokenizer(const std::string& dir, const LlamaConfig& cfg,
                               std::string_view who) {
  const std::filesystem::path path = std::filesystem::path(dir) / "tokenizer.model";
  if (!std::filesystem::exists(path))
    BEAVER_FAIL(who, ": ", dir, " has no tokenizer.model (the sentencepiece tokenizer travels "
                "with the model folder; copy the one this model was trained with into it)");
  Tokenizer tok = Tokenizer::from_file(path.string());
  const int64_t pieces = tok.vocab_size();
  if (cfg.vocab_size == pieces + 1) tok.add_pad_token();  // safe-rlhf's added <pad>
  BEAVER_CHECK(tok.vocab_size() <= cfg.vocab_size, who, ": ", dir, ": the tokenizer has ",
               tok.vocab_size(), " pieces but the model only ", cfg.vocab_size,
               " ids: this tokenizer.model belongs to another model");
  if (cfg.vocab_size > tok.vocab_size())
    log_warn(who, ": ", dir, ": the model has ", cfg.vocab_size, " token ids but its tokenizer ",
             "only ", tok.vocab_size(), " pieces; ids from ", tok.vocab_size(),
             " on print as <unk> in generated text. If the model was trained with another "
             "tokenizer, its output will be garbage: use that tokenizer.model");
  auto id_warning = [&](const char* name, int64_t in_config, int64_t in_tokenizer) {
    if (in_config != in_tokenizer)
      log_warn(who, ": ", dir, ": the config says ", name, "_token_id ", in_config,
               " but the tokenizer's ", name, " is ", in_tokenizer, "; Beaver follows the "
               "tokenizer (check that this tokenizer.model belongs to the model)");
  };
  id_warning("bos", cfg.bos_token_id, tok.bos_id());
  id_warning("eos", cfg.eos_token_id, tok.eos_id());
  if (cfg.pad_token_id >= 0 && tok.pad_id() >= 0) id_warning("pad", cfg.pad_token_id, tok.pad_id());
  return tok;
}

LoadReport load_weights(LlamaModel& m, const std::string& dir, uint64_t score_head_seed) {
  std::optional<BeaverCheckpoint> bk;
  std::optional<HfCheckpoint> hf;
  LoadReport rep;
  if (is_beaver_dir(dir)) {
    bk.emplace(dir);
    rep.stored_kind = bk->kind();
    rep.source = cat("beaver checkpoint (", dtype_name(bk->dtype()), ")");
  } else {
    hf.emplace(dir);
    rep.stored_kind = hf->kind();
    rep.source = hf->source();
  }
  const LlamaConfig& s = bk ? bk->config() : hf->config();
  const LlamaConfig& c = m.config();
  auto same = [&](const char* field, int64_t a, int64_t b) {
    BEAVER_CHECK(a == b, dir, ": ", field, " is ", a, " in the checkpoint but ", b,
                 " in the model");
  };
  same("hidden_size", s.hidden_size, c.hidden_size);
  same("intermediate_size", s.intermediate_size, c.intermediate_size);
  same("num_hidden_layers", s.num_hidden_layers, c.num_hidden_layers);
  same("num_attention_heads", s.num_attention_heads, c.num_attention_heads);
  same("num_key_value_heads", s.num_key_value_heads, c.num_key_value_heads);
  same("head_dim", s.head_dim, c.head_dim);
  BEAVER_CHECK(c.vocab_size >= s.vocab_size, dir, ": the checkpoint has ", s.vocab_size,
               " tokens, the model only ", c.vocab_size);
  rep.added_vocab_rows = c.vocab_size - s.vocab_size;
  const bool lm_model = m.head() == Head::LM;
  BEAVER_CHECK(!lm_model || rep.stored_kind == ModelKind::CausalLM, dir,
               ": a score-model checkpoint has no LM head to build a causal LM from");
  if (lm_model)
    BEAVER_CHECK(s.tie_word_embeddings == c.tie_word_embeddings, dir,
                 ": tie_word_embeddings is ", s.tie_word_embeddings, " in the checkpoint but ",
                 c.tie_word_embeddings, " in the model");

  auto stored = [&](const std::string& name) -> const SafeTensorInfo& {
    return bk ? bk->weights().at(name) : hf->at(name);
  };
  for (const auto& p : m.params()) {
    const bool score_param = p.name.rfind("score_head.", 0) == 0;
    if (score_param && rep.stored_kind == ModelKind::CausalLM) continue;  // fresh below
    const SafeTensorInfo& t = stored(p.name);
    const OwnedTensor host = to_dtype(t, m.precision().master);
    const NonfiniteCount bad = count_nonfinite(host.view());
    BEAVER_CHECK(!bad, dir, ": tensor ", p.name, " holds ", describe_nonfinite(bad, host.view()),
                 "; refusing to start from a model with non-finite weights");
    const bool vocab_rows = p.name == "model.embed_tokens.weight" || p.name == "lm_head.weight";
    if (vocab_rows && rep.added_vocab_rows > 0) {
      const OwnedTensor grown(m.precision().master, p.shape);
      grow_rows_with_mean(host, grown);
      m.write_param(p.name, grown);
    } else {
      BEAVER_CHECK(Shape(t.shape) == p.shape, dir, ": tensor ", p.name, " has shape ",
                   Shape(t.shape).str(), ", the model expects ", p.shape.str());
      // Ordered on the model's stream (a CUDA model's master params live on the device); a
      // sharded model keeps only this rank's part.
      m.write_param(p.name, host.view().view(p.shape));
    }
  }
  if (!lm_model && rep.stored_kind == ModelKind::CausalLM) {
    m.init_score_head(score_head_seed);
    rep.fresh_score_head = true;
  }
  m.sync_working_params();  // the bf16 working copy of a CUDA model (no-op on the CPU)
  log_info("loaded ", m.params().size(), " tensors from ", dir, " (", rep.source, ")",
           rep.fresh_score_head ? ", fresh score head" : "",
           rep.added_vocab_rows > 0 ? cat(", ", rep.added_vocab_rows, " vocabulary rows added")
                                    : std::string());
  return rep;
}

void save_weights(const LlamaModel& m, const std::string& dir, DType dtype,
                  const std::string& tokenizer_dir) {
  m.context().synchronize();  // the master params are read back through the legacy stream
  std::vector<TensorSource> sources;
  std::vector<OwnedTensor> gathered;
  if (m.params_sharded()) {
    // Every rank joins the gather; rank 0 writes.
    gathered = m.gather_params(0);
    if (gathered.empty()) return;
    for (size_t i = 0; i < m.params().size(); ++i)
      sources.push_back(tensor_source(m.params()[i].name, gathered[i].view()));
  } else {
    for (const auto& p : m.params()) sources.push_back(tensor_source(p.name, m.param(p.name)));
  }
  const ModelKind kind = m.head() == Head::LM ? ModelKind::CausalLM : ModelKind::ScoreModel;
  write_beaver_checkpoint(dir, m.config(), kind, dtype, sources, tokenizer_dir);
}

}  // namespace beaver::model
