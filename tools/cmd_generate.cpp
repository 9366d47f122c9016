// `beaver generate` and `beaver chat`: text generation with the inference engine
// (model/engine.h).
//   generate --prompt TEXT   streams the answer's tokens to the terminal as they are sampled;
//   generate --prompts FILE  (JSONL or a JSON array; "prompt" fields, or Alpaca's instruction +
//                            input, read by train/data.h) writes one JSON object per prompt to
//                            --output, or to stdout without it, with a progress line (rate,
//                            ETA) on stderr after every batch;
//   chat                     reads the user's turns from stdin, one per line, and streams each
//                            answer; the conversation so far goes back into the multi-turn
//                            template (train/template.h), earliest exchanges dropped when it
//                            outgrows the context. "/reset" starts a new conversation.
// Prompts are wrapped in the conversation template unless --no_template. Sampling defaults to
// temperature 1 with top-k and top-p off (--temperature 0: greedy); prefill and decode
// tokens/s are printed at the end, on stderr.
// `mpirun -np N beaver generate --prompts FILE`: batch k runs on rank k mod N (with the seeds of
// its global prompt indices, so the answers are one rank's), the ranks' answers are gathered
// after every round of N batches and rank 0 alone writes them, in prompt order. --prompt and
// chat run on one rank.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "csrc/atomic_file.h"
#include "csrc/context.h"
#include "csrc/log.h"
#include "model/config.h"
#include "model/engine.h"
#include "model/llama.h"
#include "model/loader.h"
#include "model/tokenizer.h"
#include "tools/commands.h"
#include "tools/ranks.h"
#include "train/data.h"
#include "train/metrics.h"
#include "train/template.h"

namespace beaver::tools {

namespace {

struct SamplingArgs {
  std::string model;
  float temperature = 1.0f;
  int top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 42;
  int64_t max_new_tokens = 128;
  int threads = 0;
};

struct GenerateArgs : SamplingArgs {
  std::string prompt, prompts_file, output;
  bool no_template = false;
  int64_t batch_size = 8;
};

void add_sampling_flags(CLI::App* cmd, SamplingArgs& a) {
  cmd->add_option("--model", a.model, "Beaver checkpoint or HF LLaMA folder (with tokenizer.model)")
      ->required();
  cmd->add_option("--temperature", a.temperature, "Sampling temperature (0: greedy)")
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top_k", a.top_k, "Sample from the k likeliest tokens (0: off)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top_p", a.top_p, "Nucleus mass (1: off)")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", a.seed, "Sequence i samples with seed + i");
  cmd->add_option("--max_new_tokens", a.max_new_tokens,
                  "Most tokens per answer (an answer also ends at EOS)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--threads", a.threads, "CPU threads (0: OpenMP default)")
      ->check(CLI::NonNegativeNumber);
}

// The causal LM of a folder and its tokenizer (model/loader.h checks the pair).
struct Loaded {
  model::Tokenizer tok;
  model::LlamaConfig cfg;
};

Loaded load(const std::string& dir, std::string_view who) {
  model::ModelKind kind{};
  model::LlamaConfig cfg = model::checkpoint_config(dir, &kind);
  BEAVER_CHECK(kind == model::ModelKind::CausalLM, who, ": ", dir,
               " holds a score model; generation needs a causal LM");
  model::Tokenizer tok = model::load_model_tokenizer(dir, cfg, who);
  return Loaded{std::move(tok), std::move(cfg)};
}

model::GenerateOptions generate_options(const SamplingArgs& a, const model::Tokenizer& tok) {
  model::GenerateOptions go;
  go.sampling = ops::SamplingConfig{a.temperature, a.top_k, a.top_p};
  go.max_new_tokens = a.max_new_tokens;
  go.eos_id = tok.eos_id();
  go.seed = a.seed;
  go.pad_id = tok.pad_id() >= 0 ? tok.pad_id() : tok.eos_id();
  return go;
}

// Text of generated ids; ids the tokenizer does not know (a padded model vocabulary) print as
// <unk> instead of failing the whole run.
std::string text_of(const model::Tokenizer& tok, std::vector<int32_t> ids) {
  for (auto& id : ids)
    if (id >= tok.vocab_size()) id = tok.unk_id();
  return tok.decode(ids);
}

// Streams one answer: decodes the whole answer so far and prints what is new (sentencepiece
// pieces only turn into text reliably in context: a leading "▁" becomes a space, bytes merge).
std::string stream_answer(model::InferenceEngine& engine, const model::Tokenizer& tok,
                          const std::vector<int32_t>& prompt, const model::GenerateOptions& go) {
  std::vector<int32_t> so_far;
  std::string printed;
  engine.generate({prompt}, go, [&](size_t, int32_t t) {
    so_far.push_back(t);
    const std::string text = text_of(tok, so_far);
    if (text.size() > printed.size() && text.compare(0, printed.size(), printed) == 0) {
      std::fputs(text.c_str() + printed.size(), stdout);
      std::fflush(stdout);
      printed = text;
    }
  });
  std::fputs("\n", stdout);
  std::fflush(stdout);  // the answer ends before anything on stderr
  return text_of(tok, so_far);
}

void print_stats(const model::InferenceEngine& engine) {
  const auto& s = engine.stats();
  std::fprintf(stderr, "prefill: %lld tokens, %.1f tokens/s; decode: %lld tokens, %.1f tokens/s\n",
               static_cast<long long>(s.prefill_tokens), s.prefill_tokens_per_s(),
               static_cast<long long>(s.decode_tokens), s.decode_tokens_per_s());
}

void run_generate(const GenerateArgs& a, Communicator& comm) {
  BEAVER_CHECK(a.prompt.empty() != a.prompts_file.empty(),
               "generate: give exactly one of --prompt TEXT and --prompts FILE (for a "
               "conversation, use `beaver chat --model ", a.model, "`)");
  BEAVER_CHECK(a.prompts_file.empty() || a.output.empty() || a.output != a.prompts_file,
               "generate: --output ", a.output, " is the --prompts file; choose another file");
  BEAVER_CHECK(!comm.distributed() || a.prompt.empty(), "generate --prompt streams one answer "
               "and runs on one rank; under mpirun give --prompts FILE (the batches are spread "
               "over the ranks)");
  const Loaded l = load(a.model, "generate");
  const model::Tokenizer& tok = l.tok;

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
      ctx, l.cfg,
      model::LlamaOptions{
          .head = model::Head::LM, .max_batch = batch, .max_seq = longest, .training = false});
  model::load_weights(m, a.model);
  model::InferenceEngine engine(m, longest + a.max_new_tokens);
  const model::GenerateOptions go = generate_options(a, tok);

  if (a.prompts_file.empty()) {
    std::printf("%s\n", texts[0].c_str());
    std::fflush(stdout);
    stream_answer(engine, tok, prompts[0], go);
    print_stats(engine);
    return;
  }
  // Batch by batch, so that progress shows; prompt k still samples with seed + k. On N ranks,
  // round r is batches r N .. r N + N - 1, batch r N + q on rank q.
  const bool root = comm.is_root();
  const int ranks = comm.size();
  std::unique_ptr<AtomicFile> file;
  if (root && !a.output.empty()) file = std::make_unique<AtomicFile>(a.output);
  const size_t step = size_t(batch);
  const size_t batches = (prompts.size() + step - 1) / step;
  int64_t mine_total = 0;
  for (size_t k = size_t(comm.rank()); k < batches; k += size_t(ranks))
    mine_total += int64_t(std::min(step, prompts.size() - k * step));
  const train::ProgressMeter progress(
      ranks > 1 ? cat("generate (rank ", comm.rank(), " of ", ranks, ")") : std::string("generate"),
      "prompts", mine_total);
  int64_t done = 0;
  for (size_t round = 0; round * size_t(ranks) < batches; ++round) {
    const size_t k = round * size_t(ranks) + size_t(comm.rank());
    std::string lines;  // this rank's batch of the round, one JSON line per prompt
    if (k < batches) {
      const size_t i = k * step, n = std::min(step, prompts.size() - i);
      const std::vector<std::vector<int32_t>> chunk(prompts.begin() + long(i),
                                                    prompts.begin() + long(i + n));
      model::GenerateOptions gc = go;
      gc.seed = go.seed + i;
      const auto out = engine.generate(chunk, gc);
      for (size_t q = 0; q < n; ++q) {
        nlohmann::json j;
        j["prompt"] = texts[i + q];
        j["response"] = text_of(tok, out[q].tokens);
        j["tokens"] = out[q].tokens.size();
        j["stopped_at_eos"] = out[q].stopped_at_eos;
        lines += j.dump() + "\n";
      }
      done += int64_t(n);
      log_info(progress.line(done));
    }
    // Rank order within a round is batch order.
    const std::vector<std::string> all =
        ranks > 1 ? comm.all_gather_bytes(lines) : std::vector<std::string>{lines};
    if (!root) continue;
    for (const std::string& part : all) {
      if (file) {
        file->write(part);
      } else {
        std::fputs(part.c_str(), stdout);
      }
    }
    if (!file) std::fflush(stdout);
  }
  if (file) {
    file->commit();
    log_info("generate: wrote ", prompts.size(), " responses to ", a.output);
  }
  if (ranks > 1) std::fprintf(stderr, "rank %d of %d: ", comm.rank(), ranks);
  print_stats(engine);
}

void run_chat(const SamplingArgs& a, int64_t context) {
  const Loaded l = load(a.model, "chat");
  const model::Tokenizer& tok = l.tok;
  int64_t limit = context;
  if (l.cfg.max_position_embeddings > 0) limit = std::min(limit, l.cfg.max_position_embeddings);
  BEAVER_CHECK(limit > a.max_new_tokens + 1, "chat: --max_length ", limit, " (capped by the "
               "model's max_position_embeddings) leaves no room for a question next to "
               "--max_new_tokens ", a.max_new_tokens);
  const int64_t prompt_limit = limit - a.max_new_tokens;
  Context ctx = Context::cpu(a.threads);
  model::LlamaModel m(
      ctx, l.cfg,
      model::LlamaOptions{
          .head = model::Head::LM, .max_batch = 1, .max_seq = prompt_limit, .training = false});
  model::load_weights(m, a.model);
  model::InferenceEngine engine(m, limit);
  model::GenerateOptions go = generate_options(a, tok);

  const bool terminal = ::isatty(STDIN_FILENO) != 0;
  if (terminal)
    std::fprintf(stderr, "chat with %s: one line per turn; /reset starts over; Ctrl-D ends\n",
                 a.model.c_str());
  std::vector<std::string> turns;  // user, assistant, user, ...
  int64_t answered = 0;
  std::string line;
  while (true) {
    if (terminal) {
      std::fputs("USER: ", stdout);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (line == "/reset") {
      turns.clear();
      if (terminal) std::fputs("(a new conversation)\n", stderr);
      continue;
    }
    turns.push_back(line);
    std::vector<int32_t> ids = tok.encode(train::format_dialogue(turns));
    // Too long for the context: drop the earliest exchanges (a user turn and its answer).
    while (int64_t(ids.size()) > prompt_limit && turns.size() > 1) {
      turns.erase(turns.begin(), turns.begin() + 2);
      ids = tok.encode(train::format_dialogue(turns));
    }
    if (int64_t(ids.size()) > prompt_limit) {
      log_warn("chat: this turn alone has ", ids.size(), " tokens; the context holds ",
               prompt_limit, " next to --max_new_tokens ", a.max_new_tokens, ". Say it shorter");
      turns.clear();
      continue;
    }
    if (terminal) {
      std::fputs("ASSISTANT:", stdout);
      std::fflush(stdout);
    }
    log_debug("chat: prompt ", ids.size(), " tokens: ", train::format_dialogue(turns));
    go.seed = a.seed + uint64_t(answered++);
    turns.push_back(stream_answer(engine, tok, ids, go));
  }
  print_stats(engine);
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "generate",
      "Generate answers with a model (KV-cache engine). Defaults: sampling at temperature 1, "
      "top-k and top-p off (--temperature 0: greedy), at most 128 new tokens per answer");
  auto a = std::make_shared<GenerateArgs>();
  add_sampling_flags(cmd, *a);
  cmd->add_option("--prompt", a->prompt, "One prompt; its answer streams to the terminal");
  cmd->add_option("--prompts", a->prompts_file,
                  "JSONL or JSON file of prompts (\"prompt\", or instruction + input)");
  cmd->add_option("--output", a->output,
                  "JSONL file for the answers to --prompts (default: stdout)");
  cmd->add_flag("--no_template", a->no_template, "Use the prompt text as is");
  cmd->add_option("--batch_size", a->batch_size, "Prompts per batch")->check(CLI::PositiveNumber);
  cmd->callback([a] { run_on_ranks([&](Communicator& comm) { run_generate(*a, comm); }); });

  auto* chat = app.add_subcommand(
      "chat",
      "Talk to a model: one line per turn on stdin, answers stream back, the conversation "
      "kept in the multi-turn template. Defaults: sampling at temperature 1, top-k and top-p "
      "off, at most 128 new tokens per answer");
  auto c = std::make_shared<SamplingArgs>();
  auto context = std::make_shared<int64_t>(2048);
  add_sampling_flags(chat, *c);
  chat->add_option("--max_length", *context,
                   "Tokens of conversation + answer kept (capped by the model's "
                   "max_position_embeddings; earlier exchanges are dropped beyond)")
      ->check(CLI::PositiveNumber);
  chat->callback([c, context] {
    require_one_rank("chat");
    run_chat(*c, *context);
  });
}

}  // namespace beaver::tools
