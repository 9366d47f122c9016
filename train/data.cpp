// Data set readers (see data.h). A file is first cut into raw records, each with the line it
// starts on (JSONL: one per line; JSON array: a small scanner that follows strings and
// nesting, so that one bad element does not hide the others), then each record is parsed and
// converted on its own. A record-level problem is an internal RecordProblem that the read loop
// turns into an Error (Stop) or a counted, logged skip (Skip).
#include "train/data.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "csrc/error.h"
#include "csrc/log.h"
#include "csrc/philox.h"
#include "train/template.h"

namespace beaver::train {

using json = nlohmann::json;

BadRecordPolicy parse_bad_record_policy(std::string_view s) {
  if (s == "skip") return BadRecordPolicy::Skip;
  if (s == "stop") return BadRecordPolicy::Stop;
  BEAVER_FAIL("bad-record policy: unknown value '", s, "' (expected skip or stop)");
}

InconsistentPairPolicy parse_inconsistent_pair_policy(std::string_view s) {
  if (s == "stop") return InconsistentPairPolicy::Stop;
  if (s == "drop") return InconsistentPairPolicy::Drop;
  if (s == "keep") return InconsistentPairPolicy::Keep;
  BEAVER_FAIL("--inconsistent_pairs: unknown value '", s, "' (expected stop, drop or keep)");
}

std::vector<SafeRlhfRecord> apply_inconsistent_pair_policy(std::vector<SafeRlhfRecord> recs,
                                                           InconsistentPairPolicy policy,
                                                           const std::string& what) {
  size_t n = 0;
  std::string first;
  for (const auto& r : recs)
    if (r.inconsistent() && n++ == 0) first = r.origin;
  if (n == 0) return recs;
  BEAVER_CHECK(policy != InconsistentPairPolicy::Stop, what, ": ", n,
               " record(s) label the safer response unsafe and the other safe (first at ", first,
               "); pass --inconsistent_pairs drop or keep to train anyway");
  if (policy == InconsistentPairPolicy::Drop) {
    std::erase_if(recs, [](const SafeRlhfRecord& r) { return r.inconsistent(); });
    log_warn(what, ": dropped ", n, " inconsistent record(s), first at ", first);
  } else {
    log_warn(what, ": kept ", n, " inconsistent record(s) (contradictory targets), first at ",
             first);
  }
  BEAVER_CHECK(!recs.empty(), what, ": no record left after dropping inconsistent ones");
  return recs;
}

namespace {

// Philox streams of the data pipeline, kept apart from each other and from epoch shuffles
// (which use small stream numbers).
constexpr uint64_t kMixStreamBase = 0x4d49580000000000ull;  // "MIX" + file index
constexpr uint64_t kSplitStream = 0x53504c4954000000ull;    // "SPLIT"

struct RawRecord {
  std::string_view text;
  int64_t line = 0;
};

struct RecordProblem {
  std::string what;
};

std::string read_whole_file(const std::string& path) {
  errno = 0;
  std::ifstream f(path, std::ios::binary);
  if (!f) BEAVER_IO_FAIL(path, "cannot open data file");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) BEAVER_IO_FAIL(path, "error while reading data file");
  return ss.str();
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<RawRecord> split_jsonl(std::string_view text) {
  std::vector<RawRecord> out;
  int64_t line = 1;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    const std::string_view rec = trim(text.substr(pos, nl - pos));
    if (!rec.empty()) out.push_back({rec, line});
    ++line;
    pos = nl + 1;
  }
  return out;
}

// Cuts a top-level JSON array (text[open] == '[') into its elements. Structural damage that
// leaves element boundaries unknown is fatal.
std::vector<RawRecord> split_array(std::string_view text, size_t open, int64_t open_line,
                                   const std::string& path) {
  std::vector<RawRecord> out;
  int64_t line = open_line, string_line = 0, elem_line = 0;
  int depth = 1;
  bool in_string = false, escaped = false, saw_comma = false;
  size_t elem_begin = std::string_view::npos;
  size_t i = open + 1;
  auto finish = [&](size_t end) {
    if (elem_begin == std::string_view::npos) {
      // "[1,,2]" or "[1,]": an element that is missing.
      out.push_back({std::string_view{}, line});
    } else {
      out.push_back({trim(text.substr(elem_begin, end - elem_begin)), elem_line});
    }
    elem_begin = std::string_view::npos;
  };
  for (; i < text.size() && depth > 0; ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (depth == 1 && c == ',') {
      finish(i);
      saw_comma = true;
    } else if (depth == 1 && c == ']') {
      if (elem_begin != std::string_view::npos || saw_comma) finish(i);
      depth = 0;
    } else {
      if (depth == 1 && elem_begin == std::string_view::npos && !is_space(c)) {
        elem_begin = i;
        elem_line = line;
      }
      if (c == '"') {
        in_string = true;
        string_line = line;
      } else if (c == '[' || c == '{') {
        ++depth;
      } else if ((c == ']' || c == '}') && depth > 1) {
        --depth;
      }
    }
    if (c == '\n') ++line;
  }
  if (in_string)
    BEAVER_FAIL(path, ":", string_line, ": unterminated string in the JSON array");
  if (depth > 0)
    BEAVER_FAIL(path, ":", open_line, ": the JSON array opened here is never closed");
  // `line` is the line of text[i]; report the line of the first stray character.
  for (; i < text.size(); ++i) {
    if (!is_space(text[i]))
      BEAVER_FAIL(path, ":", line, ": unexpected text after the end of the JSON array");
    if (text[i] == '\n') ++line;
  }
  return out;
}

std::vector<RawRecord> split_records(std::string_view text, const std::string& path) {
  // A UTF-8 byte order mark is not part of the JSON.
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  int64_t line = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n') ++line;
    if (is_space(text[i])) continue;
    if (text[i] == '[') return split_array(text, i, line, path);
    break;
  }
  return split_jsonl(text);
}

// ---- Field access: each failure names the field and what was found --------------------------
const json& field(const json& o, const char* key) {
  const auto it = o.find(key);
  if (it == o.end()) throw RecordProblem{cat("field '", key, "' is missing")};
  return *it;
}

std::string get_string(const json& o, const char* key) {
  const json& v = field(o, key);
  if (!v.is_string())
    throw RecordProblem{cat("field '", key, "' should be a string, found ", v.type_name())};
  return v.get<std::string>();
}

std::string get_nonempty_string(const json& o, const char* key) {
  std::string s = get_string(o, key);
  if (trim(s).empty()) throw RecordProblem{cat("field '", key, "' is empty")};
  return s;
}

// Absent or null reads as empty.
std::string get_optional_string(const json& o, const char* key) {
  const auto it = o.find(key);
  if (it == o.end() || it->is_null()) return {};
  if (!it->is_string())
    throw RecordProblem{cat("field '", key, "' should be a string, found ", it->type_name())};
  return it->get<std::string>();
}

bool get_bool(const json& o, const char* key) {
  const json& v = field(o, key);
  if (!v.is_boolean())
    throw RecordProblem{cat("field '", key, "' should be a boolean, found ", v.type_name())};
  return v.get<bool>();
}

int get_binary_id(const json& o, const char* key) {
  const json& v = field(o, key);
  if (!v.is_number_integer())
    throw RecordProblem{cat("field '", key, "' should be the integer 0 or 1, found ",
                            v.type_name(), " ", v.dump())};
  if (v != 0 && v != 1)
    throw RecordProblem{cat("field '", key, "' should be 0 or 1, found ", v.dump())};
  return v.get<int>();
}

std::string alpaca_prompt_of(const json& o) {
  return alpaca_prompt(get_nonempty_string(o, "instruction"), get_optional_string(o, "input"));
}

// The read loop shared by every reader: convert(record json) → T or throws RecordProblem.
template <typename T, typename Convert>
std::vector<T> read_records(const std::string& path, const ReadOptions& opt, ReadReport* report,
                            std::string_view kind, Convert&& convert) {
  const std::string text = read_whole_file(path);
  const std::vector<RawRecord> raw = split_records(text, path);
  ReadReport local;
  ReadReport& rep = report ? *report : local;
  rep = ReadReport{};
  rep.path = path;
  std::vector<T> out;
  out.reserve(raw.size());
  constexpr size_t kLogged = 10;
  for (const RawRecord& r : raw) {
    const std::string where = cat(path, ":", r.line);
    try {
      if (r.text.empty()) throw RecordProblem{"empty array element"};
      json j;
      try {
        j = json::parse(r.text);
      } catch (const json::parse_error& e) {
        throw RecordProblem{cat("bad JSON: ", e.what())};
      }
      if (!j.is_object())
        throw RecordProblem{cat("a ", kind, " record must be a JSON object, found ",
                                j.type_name())};
      out.push_back(convert(j, where));
      ++rep.records;
    } catch (const RecordProblem& p) {
      const std::string msg = cat(where, ": ", p.what, " (", kind, " record)");
      if (opt.policy == BadRecordPolicy::Stop) BEAVER_FAIL(msg);
      if (rep.skipped < kLogged) log_warn("skipping malformed record: ", msg);
      if (rep.problems.size() < ReadReport::kMaxProblems) rep.problems.push_back(msg);
      ++rep.skipped;
    }
  }
  if (rep.skipped > 0)
    log_warn(path, ": skipped ", rep.skipped, " malformed ", kind, " record(s) of ",
             rep.skipped + rep.records, (rep.skipped > kLogged ? " (first 10 shown)" : ""));
  BEAVER_CHECK(!out.empty(), path, ": no usable ", kind, " record (", rep.skipped,
               " malformed, ", raw.size(), " in total)");
  return out;
}

}  // namespace

// ---- Readers -----------------------------------------------------------------------------------
std::vector<SftExample> read_alpaca(const std::string& path, const ReadOptions& opt,
                                    ReadReport* report) {
  return read_records<SftExample>(path, opt, report, "Alpaca",
                                  [](const json& j, const std::string& where) {
                                    SftExample e;
                                    e.prompt = alpaca_prompt_of(j);
                                    e.answer = get_string(j, "output");
                                    e.origin = where;
                                    return e;
                                  });
}

std::vector<SafeRlhfRecord> read_safe_rlhf(const std::string& path, const ReadOptions& opt,
                                           ReadReport* report) {
  ReadReport local;
  ReadReport& rep = report ? *report : local;
  auto out = read_records<SafeRlhfRecord>(
      path, opt, &rep, "PKU-SafeRLHF", [](const json& j, const std::string& where) {
        SafeRlhfRecord r;
        r.prompt = get_nonempty_string(j, "prompt");
        r.response[0] = get_string(j, "response_0");
        r.response[1] = get_string(j, "response_1");
        r.is_safe[0] = get_bool(j, "is_response_0_safe");
        r.is_safe[1] = get_bool(j, "is_response_1_safe");
        r.better_id = get_binary_id(j, "better_response_id");
        r.safer_id = get_binary_id(j, "safer_response_id");
        r.origin = where;
        return r;
      });
  for (const auto& r : out)
    if (r.inconsistent()) rep.inconsistent.push_back(r.origin);
  if (!rep.inconsistent.empty())
    log_warn(path, ": ", rep.inconsistent.size(),
             " record(s) label the safer response unsafe and the other safe (first at ",
             rep.inconsistent.front(), ")");
  return out;
}

std::vector<PromptExample> read_prompts(const std::string& path, const ReadOptions& opt,
                                        ReadReport* report) {
  return read_records<PromptExample>(
      path, opt, report, "prompt", [](const json& j, const std::string& where) {
        PromptExample p;
        if (j.contains("prompt")) {
          p.prompt = get_nonempty_string(j, "prompt");
        } else if (j.contains("instruction")) {
          p.prompt = alpaca_prompt_of(j);
        } else {
          throw RecordProblem{"neither a 'prompt' nor an 'instruction' field"};
        }
        // Optional label (the toy world's topic), used by per-category evaluation tables.
        if (j.contains("category") && !j["category"].is_null()) p.category = get_string(j, "category");
        p.origin = where;
        return p;
      });
}

std::vector<PromptExample> dedup_prompts(std::vector<PromptExample> prompts) {
  std::unordered_set<std::string> seen;
  std::vector<PromptExample> out;
  out.reserve(prompts.size());
  for (auto& p : prompts)
    if (seen.insert(p.prompt).second) out.push_back(std::move(p));
  return out;
}

PreferencePair helpfulness_pair(const SafeRlhfRecord& r) {
  return {r.prompt, r.response[r.better_id], r.response[1 - r.better_id], r.origin};
}

SafetyPair harmlessness_pair(const SafeRlhfRecord& r) {
  SafetyPair p;
  p.prompt = r.prompt;
  p.safer = r.response[r.safer_id];
  p.unsafer = r.response[1 - r.safer_id];
  p.is_safer_safe = r.is_safe[r.safer_id];
  p.is_unsafer_safe = r.is_safe[1 - r.safer_id];
  p.origin = r.origin;
  return p;
}

// ---- Mixing ------------------------------------------------------------------------------------
DatasetSpec parse_dataset_spec(std::string_view s) {
  BEAVER_CHECK(!s.empty(), "data set: empty argument (expected path[:proportion])");
  DatasetSpec spec;
  spec.path = std::string(s);
  const size_t colon = s.rfind(':');
  if (colon == std::string_view::npos) return spec;
  const std::string_view num = s.substr(colon + 1);
  double p = 0.0;
  const auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), p);
  if (num.empty() || ec != std::errc() || end != num.data() + num.size()) return spec;
  BEAVER_CHECK(std::isfinite(p) && p >= 0, "data set '", s,
               "': the proportion must be a finite number >= 0, got ", num);
  BEAVER_CHECK(colon > 0, "data set '", s, "': the path is empty");
  spec.path = std::string(s.substr(0, colon));
  spec.proportion = p;
  return spec;
}

std::vector<size_t> proportion_indices(size_t n, double p, uint64_t seed, uint64_t stream) {
  BEAVER_CHECK(std::isfinite(p) && p >= 0, "proportion must be a finite number >= 0, got ", p);
  if (n == 0) return {};
  const double want = std::round(double(n) * p);
  BEAVER_CHECK(want < 1e12, "proportion ", p, " of ", n, " records is too large");
  const size_t total = size_t(want), full = total / n, rem = total % n;
  std::vector<size_t> idx;
  idx.reserve(total);
  for (size_t c = 0; c < full; ++c)
    for (size_t i = 0; i < n; ++i) idx.push_back(i);
  if (rem > 0) {
    std::vector<size_t> pick = shuffled_indices(n, seed, kMixStreamBase + stream);
    pick.resize(rem);
    std::sort(pick.begin(), pick.end());
    idx.insert(idx.end(), pick.begin(), pick.end());
  }
  return idx;
}

namespace {
template <typename T, typename Reader>
std::vector<T> load_mixture(const std::vector<DatasetSpec>& specs, uint64_t seed,
                            const ReadOptions& opt, std::vector<ReadReport>* reports,
                            Reader&& read) {
  BEAVER_CHECK(!specs.empty(), "no data set given");
  if (reports) reports->clear();
  std::vector<T> out;
  for (size_t f = 0; f < specs.size(); ++f) {
    ReadReport rep;
    std::vector<T> recs = read(specs[f].path, opt, &rep);
    const auto idx = proportion_indices(recs.size(), specs[f].proportion, seed, f);
    log_info("data set ", specs[f].path, ": ", recs.size(), " records, proportion ",
             specs[f].proportion, " -> ", idx.size());
    for (size_t i : idx) out.push_back(recs[i]);
    if (reports) reports->push_back(std::move(rep));
  }
  BEAVER_CHECK(!out.empty(), "the data set mixture selects no record (all proportions round to 0)");
  return out;
}
}  // namespace

std::vector<SftExample> load_sft_mixture(const std::vector<DatasetSpec>& specs, uint64_t seed,
                                         const ReadOptions& opt,
                                         std::vector<ReadReport>* reports) {
  return load_mixture<SftExample>(specs, seed, opt, reports, read_alpaca);
}

std::vector<SafeRlhfRecord> load_safe_rlhf_mixture(const std::vector<DatasetSpec>& specs,
                                                   uint64_t seed, const ReadOptions& opt,
                                                   std::vector<ReadReport>* reports) {
  return load_mixture<SafeRlhfRecord>(specs, seed, opt, reports, read_safe_rlhf);
}

std::vector<PromptExample> load_prompt_mixture(const std::vector<DatasetSpec>& specs,
                                               uint64_t seed, const ReadOptions& opt,
                                               std::vector<ReadReport>* reports) {
  return dedup_prompts(load_mixture<PromptExample>(specs, seed, opt, reports, read_prompts));
}

// ---- Shuffle and split -------------------------------------------------------------------------
namespace {
// Uniform integer in [0, bound) without modulo bias (Lemire's multiply-and-reject).
uint32_t uniform_below(PhiloxStream& rng, uint32_t bound) {
  uint64_t m = uint64_t(rng.next_u32()) * bound;
  uint32_t low = uint32_t(m);
  if (low < bound) {
    const uint32_t threshold = uint32_t(-bound) % bound;
    while (low < threshold) {
      m = uint64_t(rng.next_u32()) * bound;
      low = uint32_t(m);
    }
  }
  return uint32_t(m >> 32);
}
}  // namespace

std::vector<size_t> shuffled_indices(size_t n, uint64_t seed, uint64_t stream) {
  BEAVER_CHECK(n <= std::numeric_limits<uint32_t>::max(), "shuffle: ", n,
               " records exceed the 2^32 - 1 supported");
  std::vector<size_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = i;
  PhiloxStream rng(seed, stream);
  for (size_t i = n; i > 1; --i) std::swap(idx[i - 1], idx[uniform_below(rng, uint32_t(i))]);
  return idx;
}

SplitIndices split_indices(size_t n, double test_fraction, uint64_t seed) {
  BEAVER_CHECK(test_fraction >= 0 && test_fraction < 1,
               "train/test split: the test fraction must be in [0, 1), got ", test_fraction);
  const size_t n_test = size_t(std::round(double(n) * test_fraction));
  BEAVER_CHECK(n_test < n, "train/test split: a test fraction of ", test_fraction, " of ", n,
               " records leaves nothing to train on");
  const auto perm = shuffled_indices(n, seed, kSplitStream);
  SplitIndices s;
  s.test.assign(perm.begin(), perm.begin() + ptrdiff_t(n_test));
  s.train.assign(perm.begin() + ptrdiff_t(n_test), perm.end());
  std::sort(s.test.begin(), s.test.end());
  std::sort(s.train.begin(), s.train.end());
  return s;
}

}  // namespace beaver::train
