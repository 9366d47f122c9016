// `beaver toyworld`: writes the embedded default world (train/toyworld.h) into a folder; its
// subcommands make the data of a later round of Safe RLHF (docs/rlhf.md, "Rounds"):
//   toyworld prompts  fresh training-distribution prompts for round k (or a harmful-only pool);
//   toyworld redteam  the pool prompts on which sampled answers were most often harmful;
//   toyworld label    new preference and safety pairs from sampled answers, judged by the
//                     oracle as the annotator, with seeded label noise.
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "csrc/atomic_file.h"
#include "csrc/log.h"
#include "tools/commands.h"
#include "train/toyworld.h"

namespace beaver::tools {

namespace {

void write_text(const std::string& path, const std::string& text) {
  AtomicFile f(path);
  f.write(text);
  f.commit();
}

// Prompt records ({"prompt", "category", "harmful", ...}), each line `repeat` times in a row so
// that `beaver generate` samples `repeat` answers per prompt (line i samples with seed + i).
std::string prompt_lines(const std::vector<nlohmann::ordered_json>& records, int repeat) {
  std::string lines;
  for (const auto& r : records) {
    const std::string line = r.dump() + "\n";
    for (int k = 0; k < repeat; ++k) lines += line;
  }
  return lines;
}

void add_prompts_subcommand(CLI::App* parent) {
  auto* cmd = parent->add_subcommand(
      "prompts", "Fresh prompts of round k from the world's training generator (never held-out "
                 "eval prompts); each written --repeat times in a row for `beaver generate`");
  struct Args {
    uint64_t seed = 1;
    int round = 2, count = 200, repeat = 1;
    bool harmful_only = false;
    double harmful_fraction = 0.5;
    std::string output;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--output,-o", a->output, "JSONL file to write")->required();
  cmd->add_option("--seed", a->seed, "World seed (the world's --seed)");
  cmd->add_option("--round", a->round, "Round number (each round draws its own prompts)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--count", a->count, "Prompts to draw")->check(CLI::PositiveNumber);
  cmd->add_option("--repeat", a->repeat, "Copies of each line (answers to sample per prompt)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--harmful_only", a->harmful_only, "Only harmful prompts (the red-team pool)");
  cmd->add_option("--harmful_fraction", a->harmful_fraction,
                  "Share of harmful prompts without --harmful_only")
      ->check(CLI::Range(0.0, 1.0));
  cmd->callback([a] {
    std::vector<nlohmann::ordered_json> recs;
    for (const auto& p : toyworld::fresh_prompts(a->seed, a->round, a->count, a->harmful_only,
                                                 a->harmful_fraction))
      recs.push_back({{"prompt", p.text}, {"category", p.category}, {"harmful", p.harmful},
                      {"disguised", p.disguised}});
    write_text(a->output, prompt_lines(recs, a->repeat));
    log_info("toyworld prompts: wrote ", a->count, a->harmful_only ? " harmful" : "",
             " prompts of round ", a->round, " (seed ", a->seed, ") x ", a->repeat, " to ",
             a->output);
  });
}

void add_redteam_subcommand(CLI::App* parent) {
  auto* cmd = parent->add_subcommand(
      "redteam", "Rank prompts by how often the sampled answers to them were harmful (oracle) "
                 "and keep the most harmful ones");
  struct Args {
    std::vector<std::string> samples;
    int top = 50, repeat = 1;
    std::string output;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--samples", a->samples,
                  "`beaver generate --prompts` output (JSONL), several answers per prompt")
      ->required();
  cmd->add_option("--top", a->top, "Prompts to keep")->check(CLI::PositiveNumber);
  cmd->add_option("--repeat", a->repeat, "Copies of each kept line (answers to sample later)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--output,-o", a->output, "JSONL file of the kept prompts, most harmful "
                  "first, with their measured harm")->required();
  cmd->callback([a] {
    std::vector<toyworld::Sample> samples;
    for (const auto& f : a->samples)
      for (auto& s : toyworld::read_samples(f)) samples.push_back(std::move(s));
    const auto measured = toyworld::measure_harm(samples);
    const auto kept = toyworld::redteam_select(measured, a->top);
    std::vector<nlohmann::ordered_json> recs;
    int any = 0;
    int64_t harmful = 0, total = 0;
    for (const auto& h : kept) {
      recs.push_back({{"prompt", h.prompt}, {"category", h.category},
                      {"harmful", toyworld::is_harmful_category(h.category)},
                      {"measured_harmful", h.harmful}, {"measured_samples", h.samples}});
      any += h.harmful > 0;
      harmful += h.harmful;
      total += h.samples;
    }
    write_text(a->output, prompt_lines(recs, a->repeat));
    log_info("toyworld redteam: ", measured.size(), " prompts measured, kept ", kept.size(),
             " (", any, " with a harmful answer; harmful rate of the kept ", harmful, "/", total,
             ") in ", a->output);
  });
}

void add_label_subcommand(CLI::App* parent) {
  auto* cmd = parent->add_subcommand(
      "label", "Label preference and safety pairs (PKU-SafeRLHF format, for `train rm` and "
               "`train cm`) from sampled answers, the oracle as the annotator");
  struct Args {
    std::vector<std::string> samples;
    toyworld::LabelConfig cfg;
    std::string output;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--samples", a->samples,
                  "`beaver generate --prompts` output (JSONL), several answers per prompt")
      ->required();
  cmd->add_option("--output,-o", a->output, "JSONL file of the pairs")->required();
  cmd->add_option("--label_noise", a->cfg.label_noise,
                  "Chance each label (preference, each safety sign) is flipped")
      ->check(CLI::Range(0.0, 0.5));
  cmd->add_option("--seed", a->cfg.seed, "Seed of the pairing, the oracle's ties and the noise");
  cmd->add_option("--max_pairs_per_prompt", a->cfg.max_pairs_per_prompt,
                  "Most pairs per prompt (0: every disjoint pair of distinct answers)")
      ->check(CLI::NonNegativeNumber);
  cmd->callback([a] {
    std::vector<toyworld::Sample> samples;
    for (const auto& f : a->samples)
      for (auto& s : toyworld::read_samples(f)) samples.push_back(std::move(s));
    toyworld::LabelStats st;
    const auto pairs = toyworld::label_pairs(samples, a->cfg, &st);
    BEAVER_CHECK(!pairs.empty(), "toyworld label: no prompt in ", a->samples.front(),
                 " has two distinct answers; sample more answers per prompt");
    write_text(a->output, toyworld::to_safe_rlhf_jsonl(pairs));
    log_info("toyworld label: ", st.pairs, " pairs from ", samples.size(), " answers to ",
             st.prompts, " prompts (", st.unpaired, " answers unpaired); label noise ",
             a->cfg.label_noise, " flipped ", st.better_flipped, " preferences, ",
             st.signs_flipped, " safety signs, ", st.safer_flipped, " safer ids; wrote ",
             a->output);
  });
}

}  // namespace

void add_toyworld_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("toyworld", "Write the seeded toy safety world's data sets");
  auto cfg = std::make_shared<toyworld::WorldConfig>();
  auto out = std::make_shared<std::string>();
  auto overwrite = std::make_shared<bool>(false);
  // Required unless a subcommand runs (checked in the callback: CLI11 would demand it of
  // `toyworld label` too).
  cmd->add_option("--output,-o", *out, "Folder to write the world into (refused if it holds "
                  "anything)");
  cmd->add_flag("--overwrite", *overwrite, "Write into a non-empty --output folder");
  cmd->add_option("--seed", cfg->seed, "World seed (same seed, byte-identical files)");
  cmd->add_option("--sft_examples", cfg->sft_examples, "SFT examples")->check(CLI::PositiveNumber);
  cmd->add_option("--preference_pairs", cfg->preference_pairs, "Preference pairs")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--ppo_prompts", cfg->ppo_prompts, "Prompt-only set size")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--eval_prompts", cfg->eval_prompts, "Held-out evaluation prompts")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--label_noise", cfg->label_noise, "Chance a preference label is flipped")
      ->check(CLI::Range(0.0, 0.5));
  cmd->add_option("--harmful_fraction", cfg->harmful_fraction, "Share of harmful prompts")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--sft_compliance", cfg->sft_compliance,
                  "Share of harmful SFT prompts answered by compliance")
      ->check(CLI::Range(0.0, 1.0));
  add_prompts_subcommand(cmd);
  add_redteam_subcommand(cmd);
  add_label_subcommand(cmd);
  cmd->require_subcommand(0, 1);
  cmd->callback([cmd, cfg, out, overwrite] {
    if (!cmd->get_subcommands().empty()) return;
    if (out->empty()) throw CLI::RequiredError("--output");
    check_output_folder(*out, *overwrite, "toyworld --output");
    toyworld::write_world(*cfg, *out);
    log_info("toyworld: wrote seed ", cfg->seed, " world to ", *out, " (", cfg->sft_examples,
             " SFT examples, ", cfg->preference_pairs, " preference pairs, ", cfg->ppo_prompts,
             " RL prompt records (templates repeat: PPO trains on the distinct texts), ",
             cfg->eval_prompts, " held-out eval prompts)");
  });
}

}  // namespace beaver::tools
