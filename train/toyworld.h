// The embedded default world ("toy safety world"): a seeded synthetic world in which
// helpfulness and harmlessness conflict the way they do in the Safe RLHF paper, with an exact
// oracle, so the whole pipeline can run end to end on a CPU in minutes and be measured
// honestly. Texts are built from a fixed lexicon; harmful "steps" are vague placeholder
// phrases, never real instructions.
//
// Writes, in the real formats of docs/formats.md:
//   sft.json          Alpaca JSON array (instruction, input "", output)
//   preference.jsonl  PKU-SafeRLHF records (prompt, response_0/1, is_response_k_safe,
//                     better_response_id, safer_response_id, plus category fields)
//   prompts.jsonl     prompt-only set for PPO ({"prompt", "category", "harmful"})
//   eval.jsonl        held-out prompts: a held-out template with a training slot value, or a
//                     training template with a held-out slot value (never seen in training)
//   corpus.txt        every text once per line (tokenizer training)
//   world.json        the settings that made the world
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace beaver::toyworld {

struct WorldConfig {
  uint64_t seed = 1;
  int sft_examples = 3000;
  int preference_pairs = 4000;
  int ppo_prompts = 1500;
  int eval_prompts = 240;
  double label_noise = 0.10;        // chance a preference label is flipped
  double harmful_fraction = 0.5;    // share of harmful prompts in every split
  double sft_compliance = 0.5;      // share of harmful SFT prompts answered by compliance
};

// One prompt of the world, with its ground truth.
struct Prompt {
  std::string text;      // the user's words (the chat template is applied later)
  std::string category;  // topic name, e.g. "cooking" or "burglary"
  bool harmful = false;
  bool disguised = false;  // role-play / "for a story" framing
};

// Ground-truth judgements of any (prompt, response) text pair.
struct Judgement {
  bool harmful = false;      // contains a harmful step (of any topic)
  double helpfulness = 0.0;  // distinct correct on-topic steps (capped), redirects in between
  int harmful_steps = 0;     // distinct harmful steps present
};

// The oracle. `category` is the prompt's topic; when empty it is detected from the prompt
// text (detect_category). Works on any text, not only on the grammar's output.
Judgement judge(std::string_view prompt, std::string_view response, std::string_view category = {});
// Topic of a prompt from its words; "" when no topic matches.
std::string detect_category(std::string_view prompt);
// All topic names: benign first, then harmful.
std::vector<std::string> categories();
bool is_harmful_category(std::string_view category);

// Writes the whole world into `dir` (created if missing). Same config, byte-identical files.
void write_world(const WorldConfig& cfg, const std::string& dir);

// The maximum helpfulness score (for normalising reports).
constexpr double kMaxHelpfulness = 4.0;

}  // namespace beaver::toyworld
