// `beaver tokenizer train`: a sentencepiece model (BPE) trained on a text corpus, in LLaMA's id
// layout (<unk> = 0, <s> = 1, </s> = 2, no pad piece), written as DIR/tokenizer.model with
// tokenizer_config.json and special_tokens_map.json. The <pad> token is not a sentencepiece
// piece: as in safe-rlhf (and model/tokenizer.h), it is appended at load time with id = the
// sentencepiece vocabulary size, so a model built for this tokenizer has vocab-size + 1 rows
// (`beaver init --vocab_from DIR` does that).
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "csrc/atomic_file.h"
#include "csrc/error.h"
#include "csrc/log.h"
#include "model/tokenizer.h"
#include "tools/commands.h"

namespace beaver::tools {

namespace {

struct TokenizerArgs {
  std::string input, output, model_type = "bpe";
  int vocab_size = 1000;
  bool overwrite = false;
};

void run_train(const TokenizerArgs& a) {
  check_output_folder(a.output, a.overwrite, "tokenizer train --output");
  std::ifstream f(a.input);
  if (!f) BEAVER_IO_FAIL(a.input, "cannot open the corpus");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(f, line))
    if (line.find_first_not_of(" \t\r") != std::string::npos) lines.push_back(line);
  BEAVER_CHECK(!lines.empty(), a.input, ": the corpus has no non-blank line");
  const std::string proto = model::train_sentencepiece(lines, a.vocab_size, a.model_type);
  model::Tokenizer tok = model::Tokenizer::from_serialized(proto, a.input);
  const int32_t sp_size = tok.vocab_size();
  const int32_t pad = tok.add_pad_token();

  std::filesystem::create_directories(a.output);
  write_text_file(a.output + "/tokenizer.model", proto);
  nlohmann::ordered_json cfg;
  cfg["tokenizer_class"] = "LlamaTokenizer";
  cfg["bos_token"] = "<s>";
  cfg["eos_token"] = "</s>";
  cfg["unk_token"] = "<unk>";
  cfg["pad_token"] = "<pad>";
  cfg["add_bos_token"] = true;
  cfg["add_eos_token"] = false;
  cfg["model_max_length"] = 512;
  cfg["padding_side"] = "right";
  write_text_file(a.output + "/tokenizer_config.json", cfg.dump(2) + "\n");
  nlohmann::ordered_json sp;
  sp["bos_token"] = "<s>";
  sp["eos_token"] = "</s>";
  sp["unk_token"] = "<unk>";
  sp["pad_token"] = "<pad>";
  write_text_file(a.output + "/special_tokens_map.json", sp.dump(2) + "\n");
  log_info("tokenizer: ", sp_size, " sentencepiece pieces from ", lines.size(), " lines of ",
           a.input, "; <pad> = ", pad, " (model vocabulary ", sp_size + 1, "); written to ",
           a.output);
}

}  // namespace

void add_tokenizer_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenizer", "Tokenizer tools");
  cmd->require_subcommand(1);
  auto* tr = cmd->add_subcommand("train", "Train a sentencepiece tokenizer on a text corpus");
  auto a = std::make_shared<TokenizerArgs>();
  tr->add_option("--input", a->input, "Corpus, one text per line")->required();
  tr->add_option("--vocab_size", a->vocab_size, "Sentencepiece pieces (<pad> comes on top)")
      ->check(CLI::Range(4, 1 << 20));
  tr->add_option("--model_type", a->model_type, "bpe | unigram");
  tr->add_option("--output", a->output,
                 "Folder for tokenizer.model and its JSON files (refused if it holds anything)")
      ->required();
  tr->add_flag("--overwrite", a->overwrite, "Write into a non-empty --output folder");
  tr->callback([a] { run_train(*a); });
}

}  // namespace beaver::tools
