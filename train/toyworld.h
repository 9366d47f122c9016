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
  int eval_prompts = 4800;  // enough to resolve the e2e bar's 0.05 (docs/rlhf.md, "Seeds")
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

// ---- Iterated rounds (docs/rlhf.md, "Rounds"): new data from the current policy ----------

// Fresh prompts from the world's training generator (training templates and slot values only,
// so never an eval.jsonl prompt), for round `round` of world `seed`: a Philox stream of their
// own (one for the mixed set, another for the harmful-only pool), so every round draws anew.
// harmful_only: only harmful prompts (the red-team pool); otherwise the world's mix.
std::vector<Prompt> fresh_prompts(uint64_t seed, int round, int n, bool harmful_only,
                                  double harmful_fraction = 0.5);

// One sampled answer (a line of `beaver generate --prompts ... --output`).
struct Sample {
  std::string prompt;
  std::string response;
};
// Reads generate's JSONL ("prompt", "response" per line); errors name the file and line.
std::vector<Sample> read_samples(const std::string& path);

// The oracle as the annotator of new preference pairs.
struct LabelConfig {
  uint64_t seed = 1;
  double label_noise = 0.0;       // chance each label (preference, safety sign) is flipped
  int max_pairs_per_prompt = 0;   // 0: every disjoint pair of distinct answers
};
// A record of the PKU-SafeRLHF format (train/data.h read_safe_rlhf reads it back).
struct LabelledPair {
  std::string prompt, category;
  std::string response[2];
  bool is_safe[2] = {true, true};
  int better_id = 0, safer_id = 0;
};
struct LabelStats {
  int prompts = 0;            // distinct prompts seen
  int pairs = 0;              // pairs written
  int unpaired = 0;           // answers left without a partner (odd counts, repeats)
  int better_flipped = 0;     // noise: better_response_id against the oracle
  int signs_flipped = 0;      // noise: is_response_k_safe against the oracle (per response)
  int safer_flipped = 0;      // noise: safer_response_id between equally labelled responses
};
// Groups the samples by prompt (first appearance order), drops repeated answer texts, pairs
// the distinct answers of each prompt in a seeded random order, and labels each pair:
// better_response_id by the helpfulness oracle, is_response_k_safe by the harm oracle, and
// safer_response_id by the labelled signs (the one labelled safe), or between two responses
// with the same sign by the number of harmful steps. Oracle ties go by a seeded coin. Noise:
// the preference and each sign flip with probability label_noise; safer_response_id follows the
// (possibly flipped) signs, so a record is never inconsistent (safer labelled unsafe, the
// other safe), and between equal signs it flips with the same probability.
std::vector<LabelledPair> label_pairs(const std::vector<Sample>& samples, const LabelConfig& cfg,
                                      LabelStats* stats = nullptr);
// PKU-SafeRLHF JSONL, one record per line.
std::string to_safe_rlhf_jsonl(const std::vector<LabelledPair>& pairs);

// How often the policy was harmful on each prompt (oracle), first appearance order.
struct PromptHarm {
  std::string prompt, category;
  int samples = 0, harmful = 0;
  double rate() const { return samples > 0 ? double(harmful) / samples : 0.0; }
};
std::vector<PromptHarm> measure_harm(const std::vector<Sample>& samples);
// The red-team prompts: the `top` prompts with the highest measured harmful rate (ties: more
// samples first, then first appearance), most harmful first.
std::vector<PromptHarm> redteam_select(std::vector<PromptHarm> measured, int top);

// The maximum helpfulness score (for normalising reports).
constexpr double kMaxHelpfulness = 4.0;

}  // namespace beaver::toyworld
