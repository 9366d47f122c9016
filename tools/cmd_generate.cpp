// `beaver generate`: text generation with the inference engine (model/engine.h).
// One --prompt streams its tokens to the terminal as they are sampled; --prompts FILE (JSONL or
// a JSON array; "prompt" fields, or Alpaca's instruction + input, read by train/data.h) writes
// one JSON object per prompt to --output. Prompts are wrapped in the conversation template unless
// --no_template. Prefill and decode tokens/s are printed at the end.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "csrc/atomic_file.h"
#include "csrc/context.h"
#include "csrc/log.h"
#include "model/loader.h"
#include "model/config.h"
#include "model/engine.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "tools/commands.h"
#include "tools/ranks.h"
#include "train/data.h"
#include "train/template.h"

namespace beaver::tools {

namespace {

struct GenerateArgs {
  std::string model, prompt, prompts_file, output;
  bool no_template = false;
  float temperature = 1.0f;
  int top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 42;
  int64_t max_new_tokens = 128;
  int64_t batch_size = 8;
  int threads = 0;
};

void run_generate(const GenerateArgs& a) {
  BEAVER_CHECK(a.prompt.empty() != a.prompts_file.empty(),
               "generate: give exactly one of --prompt and --prompts");
  BEAVER_CHECK(a.prompts_file.empty() || !a.output.empty(),
               "generate: --prompts needs --output FILE.jsonl");
  model::Tokenizer tok = model::Tokenizer::from_file(a.model + "/tokenizer.model");
  model::ModelKind kind{};
  const model::LlamaConfig cfg = model::checkpoint_config(a.model, &kind);
  BEAVER_CHECK(kind == model::ModelKind::CausalLM, "generate: ", a.model,
               " holds a score model; generation needs a causal LM");
  if (cfg.vocab_size == tok.vocab_size() + 1) tok.add_pad_token();  // safe-rlhf's added <pad>
  BEAVER_CHECK(tok.vocab_size() <= cfg.vocab_size, "generate: the tokenizer has ",
               tok.vocab_size(), " tokens, the model only ", cfg.vocab_size);

  if (cfg.vocab_size > tok.vocab_size())
    log_warn("generate: the model has ", cfg.vocab_size, " tokens, the tokenizer ",
             tok.vocab_size(), "; ids past the tokenizer print as <unk>");
  // Text of generated ids; ids the tokenizer does not know (a padded model vocabulary) print
  // as <unk> instead of failing the whole run.
  auto text_of = [&tok](std::vector<int32_t> ids) {
    for (auto& id : ids)
      if (id >= tok.vocab_size()) id = tok.unk_id();
    return tok.decode(ids);
  };

  std::vector<std::string> texts;
  if (a.prompt.empty()) {
    for (auto& p : train::read_prompts(a.prompts_file)) texts.push_back(std::move(p.prompt));
  } else {
    texts.push_back(a.prompt);
  }
  std::vector<std::vector<int32_t>> prompts;
  int64_t longest = 0;
  for (const auto& t : texts) {
    prompts.push_back(tok.encode(a.no_template ? t : train::format_prompt(t)));
    longest = std::max<int64_t>(longest, int64_t(prompts.back().size()));
  }

  Context ctx = Context::cpu(a.threads);
  const int64_t batch = std::min<int64_t>(a.batch_size, int64_t(prompts.size()));
  model::LlamaModel m(
      ctx, cfg,
      model::LlamaOptions{
          .head = model::Head::LM, .max_batch = batch, .max_seq = longest, .training = false});
  model::load_weights(m, a.model);
  model::InferenceEngine engine(m, longest + a.max_new_tokens);
  model::GenerateOptions go;
  go.sampling = ops::SamplingConfig{a.temperature, a.top_k, a.top_p};
  go.max_new_tokens = a.max_new_tokens;
  go.eos_id = tok.eos_id();
  go.seed = a.seed;
  go.pad_id = tok.pad_id() >= 0 ? tok.pad_id() : tok.eos_id();

  if (a.prompts_file.empty()) {
    // Streaming: decode the whole answer so far and print what is new (sentencepiece pieces
    // only turn into text reliably in context: a leading "▁" becomes a space, bytes merge).
    std::vector<int32_t> so_far;
    std::string printed;
    std::printf("%s\n", texts[0].c_str());
    std::fflush(stdout);
    engine.generate(prompts, go, [&](size_t, int32_t t) {
      so_far.push_back(t);
      const std::string text = text_of(so_far);
      if (text.size() > printed.size() && text.compare(0, printed.size(), printed) == 0) {
        std::fputs(text.c_str() + printed.size(), stdout);
        std::fflush(stdout);
        printed = text;
      }
    });
    std::fputs("\n", stdout);
    std::fflush(stdout);  // the answer ends before the timing line on stderr
  } else {
    const auto out = engine.generate(prompts, go);
    AtomicFile f(a.output);
    for (size_t i = 0; i < out.size(); ++i) {
      nlohmann::json j;
      j["prompt"] = texts[i];
      j["response"] = text_of(out[i].tokens);
      j["tokens"] = out[i].tokens.size();
      j["stopped_at_eos"] = out[i].stopped_at_eos;
      f.write(j.dump() + "\n");
    }
    f.commit();
    log_info("generate: wrote ", out.size(), " responses to ", a.output);
  }
  const auto& s = engine.stats();
  std::fprintf(stderr, "prefill: %lld tokens, %.1f tokens/s; decode: %lld tokens, %.1f tokens/s\n",
               static_cast<long long>(s.prefill_tokens), s.prefill_tokens_per_s(),
               static_cast<long long>(s.decode_tokens), s.decode_tokens_per_s());
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate answers with a model (KV-cache engine)");
  auto a = std::make_shared<GenerateArgs>();
  cmd->add_option("--model", a->model, "Beaver checkpoint or HF LLaMA folder")->required();
  cmd->add_option("--prompt", a->prompt, "One prompt; its answer streams to the terminal");
  cmd->add_option("--prompts", a->prompts_file,
                  "JSONL or JSON file of prompts (\"prompt\", or instruction + input)");
  cmd->add_option("--output", a->output, "JSONL file for the answers to --prompts");
  cmd->add_flag("--no_template", a->no_template, "Use the prompt text as is");
  cmd->add_option("--temperature", a->temperature, "0 = greedy")->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top_k", a->top_k, "0 = off")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top_p", a->top_p, "1 = off")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", a->seed, "Sequence i samples with seed + i");
  cmd->add_option("--max_new_tokens", a->max_new_tokens, "Per prompt")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--batch_size", a->batch_size, "Prompts per batch")->check(CLI::PositiveNumber);
  cmd->add_option("--threads", a->threads, "CPU threads (0 = OpenMP default)")
      ->check(CLI::NonNegativeNumber);
  cmd->callback([a] {
    require_one_rank("generate");
    run_generate(*a);
  });
}

}  // namespace beaver::tools
