// `beaver init`: a randomly initialised causal LM checkpoint (Beaver format, f32), so that a
// run can start SFT from scratch (the toy world does). Sizes come from an HF config.json
// (--config_json) or from flags; --vocab_from DIR takes the vocabulary size from a tokenizer
// folder (sentencepiece pieces + the added <pad>) and copies its files into the checkpoint.
// Init as Hugging Face's LLaMA: weights ~ N(0, 0.02), RMSNorm weights 1 (train/init_model.h).
#include <filesystem>
#include <memory>
#include <string>

#include "csrc/context.h"
#include "csrc/error.h"
#include "csrc/log.h"
#include "model/config.h"
#include "model/llama.h"
#include "model/loader.h"
#include "model/tokenizer.h"
#include "tools/commands.h"
#include "train/init_model.h"

namespace beaver::tools {

namespace {

struct InitArgs {
  std::string config_json, vocab_from, output;
  int64_t hidden = 128, layers = 4, heads = 4, kv_heads = 4, intermediate = 344, vocab = 0;
  int64_t max_position = 128;
  double rope_theta = 10000.0, rms_norm_eps = 1e-6, init_std = 0.02;
  bool tie = false;
  uint64_t seed = 42;
};

void run_init(const InitArgs& a) {
  model::LlamaConfig c;
  if (!a.config_json.empty()) {
    c = model::LlamaConfig::load(a.config_json);
  } else {
    c.hidden_size = a.hidden;
    c.num_hidden_layers = a.layers;
    c.num_attention_heads = a.heads;
    c.num_key_value_heads = a.kv_heads;
    c.intermediate_size = a.intermediate;
    c.max_position_embeddings = a.max_position;
    c.rope_theta = a.rope_theta;
    c.rms_norm_eps = a.rms_norm_eps;
    c.tie_word_embeddings = a.tie;
    c.head_dim = a.heads > 0 ? a.hidden / a.heads : 0;
    c.vocab_size = a.vocab;
  }
  c.architecture = "LlamaForCausalLM";
  if (!a.vocab_from.empty()) {
    model::Tokenizer tok = model::Tokenizer::from_file(a.vocab_from + "/tokenizer.model");
    const int32_t pad = tok.add_pad_token();
    c.vocab_size = tok.vocab_size();
    c.bos_token_id = tok.bos_id();
    c.eos_token_id = tok.eos_id();
    c.pad_token_id = pad;
  }
  BEAVER_CHECK(c.vocab_size > 0, "init: give --vocab_from TOKENIZER_DIR or --vocab N (or a "
               "config with vocab_size)");
  c.validate(a.config_json.empty() ? std::string("init flags") : a.config_json);
  BEAVER_CHECK(!std::filesystem::exists(a.output + "/beaver.json"), a.output,
               ": already holds a checkpoint");
  Context ctx = Context::cpu(1);
  model::LlamaOptions o;
  o.head = model::Head::LM;
  o.max_batch = 1;
  o.max_seq = 1;
  o.training = false;
  model::LlamaModel m(ctx, c, o);
  train::random_init(m, a.seed, a.init_std);
  model::save_weights(m, a.output, DType::F32, a.vocab_from);
  int64_t n = 0;
  for (const auto& p : m.params()) n += p.shape.numel();
  log_info("init: ", n, " parameters (hidden ", c.hidden_size, ", ", c.num_hidden_layers,
           " layers, vocabulary ", c.vocab_size, ", seed ", a.seed, ") written to ", a.output);
}

}  // namespace

void add_init_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("init", "Write a randomly initialised causal LM checkpoint");
  auto a = std::make_shared<InitArgs>();
  cmd->add_option("--config_json", a->config_json, "HF config.json giving the sizes");
  cmd->add_option("--hidden", a->hidden, "hidden_size");
  cmd->add_option("--layers", a->layers, "num_hidden_layers");
  cmd->add_option("--heads", a->heads, "num_attention_heads");
  cmd->add_option("--kv_heads", a->kv_heads, "num_key_value_heads");
  cmd->add_option("--intermediate", a->intermediate, "intermediate_size");
  cmd->add_option("--vocab", a->vocab, "vocab_size (instead of --vocab_from)");
  cmd->add_option("--vocab_from", a->vocab_from,
                  "Tokenizer folder: vocabulary size (+ <pad>) and files copied along");
  cmd->add_option("--max_position", a->max_position, "max_position_embeddings");
  cmd->add_option("--rope_theta", a->rope_theta, "rope_theta");
  cmd->add_option("--rms_norm_eps", a->rms_norm_eps, "rms_norm_eps");
  cmd->add_flag("--tie_word_embeddings", a->tie, "Share the embedding with the LM head");
  cmd->add_option("--init_std", a->init_std, "Std of the normal init (HF initializer_range)");
  cmd->add_option("--seed", a->seed, "Init seed");
  cmd->add_option("--output", a->output, "Checkpoint folder to write")->required();
  cmd->callback([a] { run_init(*a); });
}

}  // namespace beaver::tools
