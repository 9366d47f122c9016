// Data set readers and mixing for the training stages: Alpaca (SFT and PTX), PKU-SafeRLHF
// (preference pairs for the reward and cost models) and prompt-only sets (PPO rollouts).
//
// Files are JSON arrays or JSONL (one object per line; blank lines are allowed), chosen by the
// first non-blank character ('[' = array). Every record carries its origin "path:line" (for
// an array element, the line where the element starts). A malformed record (bad JSON, not an
// object, a missing or mistyped field, an id other than 0/1) is reported as
// "path:line: what"; the BadRecordPolicy decides what follows: Stop throws beaver::Error at
// the first one, Skip drops it, logs it, counts it in the ReadReport and logs a summary.
// Damage that hides where records begin (an unterminated array or string) always stops, and a
// file with no usable record is an Error. Unknown fields are ignored (the 2024 PKU-SafeRLHF
// release adds several).
//
// Mixing follows the reference scripts: a data set argument is `path[:proportion]`; a
// proportion p takes round(n·p) records: whole copies of the file for the integer part and a
// deterministic seeded subset (in file order) for the rest. Shuffles and splits are
// deterministic functions of a seed (Philox), so every rank and every resumed run sees the
// same order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace beaver::train {

enum class BadRecordPolicy { Skip, Stop };
// "skip" | "stop"; anything else is an Error naming the value.
BadRecordPolicy parse_bad_record_policy(std::string_view s);

struct ReadOptions {
  BadRecordPolicy policy = BadRecordPolicy::Stop;
};

// What one read found. problems holds the first kMaxProblems messages ("path:line: what").
struct ReadReport {
  static constexpr size_t kMaxProblems = 100;
  std::string path;
  size_t records = 0;  // accepted
  size_t skipped = 0;  // malformed, dropped under BadRecordPolicy::Skip
  std::vector<std::string> problems;
  // PKU-SafeRLHF only: records whose safer response is labelled unsafe while the other is
  // labelled safe ("path:line"). They are kept (the data says so) and reported.
  std::vector<std::string> inconsistent;
};

// ---- Records ----------------------------------------------------------------------------------
struct SftExample {
  std::string prompt;  // instruction [+ ' ' + input]
  std::string answer;
  std::string origin;  // "path:line"
};

struct SafeRlhfRecord {
  std::string prompt;
  std::string response[2];
  bool is_safe[2] = {false, false};
  int better_id = 0;  // better_response_id
  int safer_id = 0;   // safer_response_id
  std::string origin;

  // The safer response is labelled unsafe while the other one is labelled safe.
  bool inconsistent() const { return !is_safe[safer_id] && is_safe[1 - safer_id]; }
};

struct PromptExample {
  std::string prompt;
  std::string origin;
  std::string category;  // optional "category" field (a string when present), else ""
};

// A helpfulness pair (reward model).
struct PreferencePair {
  std::string prompt, better, worse;
  std::string origin;
};
// A harmlessness pair (cost model).
struct SafetyPair {
  std::string prompt, safer, unsafer;
  bool is_safer_safe = false, is_unsafer_safe = false;
  std::string origin;
  bool inconsistent() const { return !is_safer_safe && is_unsafer_safe; }
};
PreferencePair helpfulness_pair(const SafeRlhfRecord& r);

// What the cost-model stage does with records whose safer response is labelled unsafe while
// the other is labelled safe (--inconsistent_pairs): stop with an error naming the first (the
// reference raises on them), drop them (counted), or keep them (trains on contradictory
// targets; counted).
enum class InconsistentPairPolicy { Stop, Drop, Keep };
// "stop" | "drop" | "keep"; anything else is an Error naming the value.
InconsistentPairPolicy parse_inconsistent_pair_policy(std::string_view s);
// Applies the policy to records read from `what` (for the messages).
std::vector<SafeRlhfRecord> apply_inconsistent_pair_policy(std::vector<SafeRlhfRecord> recs,
                                                           InconsistentPairPolicy policy,
                                                           const std::string& what);
SafetyPair harmlessness_pair(const SafeRlhfRecord& r);

// ---- Readers (one file) -----------------------------------------------------------------------
// Alpaca: instruction (string, non-empty), input (string; absent or null = empty), output
// (string).
std::vector<SftExample> read_alpaca(const std::string& path, const ReadOptions& opt = {},
                                    ReadReport* report = nullptr);
// PKU-SafeRLHF: prompt, response_0, response_1 (strings), is_response_0_safe,
// is_response_1_safe (booleans), better_response_id, safer_response_id (integers 0 or 1).
std::vector<SafeRlhfRecord> read_safe_rlhf(const std::string& path, const ReadOptions& opt = {},
                                           ReadReport* report = nullptr);
// Prompts from any of the above: a "prompt" field if present, else Alpaca's instruction/input.
// Not de-duplicated (see dedup_prompts).
std::vector<PromptExample> read_prompts(const std::string& path, const ReadOptions& opt = {},
                                        ReadReport* report = nullptr);

// Keeps the first occurrence of each prompt text, in order.
std::vector<PromptExample> dedup_prompts(std::vector<PromptExample> prompts);

// ---- Mixing -----------------------------------------------------------------------------------
struct DatasetSpec {
  std::string path;
  double proportion = 1.0;
};
// "path" or "path:proportion" (proportion a finite number >= 0). A suffix after the last ':'
// that is not a number belongs to the path.
DatasetSpec parse_dataset_spec(std::string_view s);

// Indices of the records that proportion p selects from n: round(n·p) of them, whole passes
// 0..n-1 for the integer part, then a seeded subset in ascending order. stream separates files.
std::vector<size_t> proportion_indices(size_t n, double p, uint64_t seed, uint64_t stream);

// Each spec read, its proportion applied (stream = position in the list), concatenated in
// list order. Reports, when given, receive one entry per spec.
std::vector<SftExample> load_sft_mixture(const std::vector<DatasetSpec>& specs, uint64_t seed,
                                         const ReadOptions& opt = {},
                                         std::vector<ReadReport>* reports = nullptr);
std::vector<SafeRlhfRecord> load_safe_rlhf_mixture(const std::vector<DatasetSpec>& specs,
                                                   uint64_t seed, const ReadOptions& opt = {},
                                                   std::vector<ReadReport>* reports = nullptr);
// Mixed, then de-duplicated (as the reference does: repeats of a prompt collapse).
std::vector<PromptExample> load_prompt_mixture(const std::vector<DatasetSpec>& specs,
                                               uint64_t seed, const ReadOptions& opt = {},
                                               std::vector<ReadReport>* reports = nullptr);

// ---- Shuffle and split ------------------------------------------------------------------------
// A permutation of 0..n-1 (Fisher-Yates over a Philox stream): same (seed, stream), same order.
// Use stream for the epoch so that each epoch differs.
std::vector<size_t> shuffled_indices(size_t n, uint64_t seed, uint64_t stream = 0);

template <typename T>
std::vector<T> take(const std::vector<T>& v, const std::vector<size_t>& idx) {
  std::vector<T> out;
  out.reserve(idx.size());
  for (size_t i : idx) out.push_back(v[i]);
  return out;
}

template <typename T>
void shuffle(std::vector<T>& v, uint64_t seed, uint64_t stream = 0) {
  v = take(v, shuffled_indices(v.size(), seed, stream));
}

// Deterministic split: round(n·test_fraction) records go to test, chosen by a seeded shuffle;
// both parts keep file order. test_fraction in [0, 1); an empty train part is an Error.
struct SplitIndices {
  std::vector<size_t> train, test;
};
SplitIndices split_indices(size_t n, double test_fraction, uint64_t seed);

template <typename T>
std::pair<std::vector<T>, std::vector<T>> train_test_split(const std::vector<T>& v,
                                                           double test_fraction, uint64_t seed) {
  const SplitIndices s = split_indices(v.size(), test_fraction, seed);
  return {take(v, s.train), take(v, s.test)};
}

}  // namespace beaver::train
