// Data readers on good files and on every kind of malformed record (messages must name the
// file and the line), mixing proportions, deterministic shuffles and splits, and the exact
// conversation-template strings.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "csrc/error.h"
#include "train/data.h"
#include "train/template.h"
#include "testutil.h"

namespace beaver::train {
namespace {

std::string write_file(const std::string& name, const std::string& content) {
  const std::string path = ::testing::TempDir() + "beaver_test_data_" + name;
  std::ofstream f(path, std::ios::binary);
  f << content;
  return path;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an error";
  return {};
}

bool contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

#define EXPECT_CONTAINS(s, needle) EXPECT_TRUE(contains((s), (needle))) << (s)

// ---- Template ---------------------------------------------------------------------------------
TEST(Template, ExactStrings) {
  EXPECT_EQ(format_prompt("What is 2+2?"),
            "BEGINNING OF CONVERSATION: USER: What is 2+2? ASSISTANT:");
  const std::vector<std::string> turns{"Hi", "Hello! How can I help?", "Tell me a joke."};
  EXPECT_EQ(format_dialogue(turns),
            "BEGINNING OF CONVERSATION: USER: Hi ASSISTANT:Hello! How can I help?</s>"
            "USER: Tell me a joke. ASSISTANT:");
  const std::vector<std::string> one{"Hi"};
  EXPECT_EQ(format_dialogue(one), format_prompt("Hi"));
  EXPECT_EQ(format_training_text(format_prompt("Hi"), " Hello."),
            "BEGINNING OF CONVERSATION: USER: Hi ASSISTANT: Hello.</s>");
  EXPECT_EQ(format_training_text(format_prompt("Hi"), "Hello.", "<eos>"),
            "BEGINNING OF CONVERSATION: USER: Hi ASSISTANT:Hello.<eos>");
  EXPECT_EQ(alpaca_prompt("Translate to French.", "cheese"), "Translate to French. cheese");
  EXPECT_EQ(alpaca_prompt("Name a color.", ""), "Name a color.");
  const std::vector<std::string> two{"Hi", "Hello"};
  EXPECT_CONTAINS(error_of([&] { format_dialogue(two); }), "2 turns");
  EXPECT_CONTAINS(error_of([&] { format_dialogue({}); }), "0 turns");
}

// ---- Alpaca -----------------------------------------------------------------------------------
TEST(Alpaca, JsonArrayWithTrickyStrings) {
  const std::string path = write_file("alpaca_array.json",
                                      "\xEF\xBB\xBF[\n"
                                      "  {\n"
                                      "    \"instruction\": \"Say ], { and \\\"hi\\\", please\",\n"
                                      "    \"input\": \"\",\n"
                                      "    \"output\": \"hi, ]}\"\n"
                                      "  },\n"
                                      "  {\"instruction\": \"Add\", \"input\": \"1 and 2\",\n"
                                      "   \"output\": \"3\\nThree\", \"extra\": [1, {\"a\": 2}]}\n"
                                      "]\n");
  ReadReport rep;
  const auto v = read_alpaca(path, {}, &rep);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].prompt, "Say ], { and \"hi\", please");
  EXPECT_EQ(v[0].answer, "hi, ]}");
  EXPECT_EQ(v[0].origin, path + ":2");
  EXPECT_EQ(v[1].prompt, "Add 1 and 2");
  EXPECT_EQ(v[1].answer, "3\nThree");
  EXPECT_EQ(v[1].origin, path + ":7");
  EXPECT_EQ(rep.records, 2u);
  EXPECT_EQ(rep.skipped, 0u);
}

TEST(Alpaca, JsonlWithBlankLinesCrlfAndOptionalInput) {
  const std::string path =
      write_file("alpaca.jsonl",
                 "{\"instruction\": \"A\", \"input\": \"x\", \"output\": \"1\"}\r\n"
                 "\r\n"
                 "   \n"
                 "{\"instruction\": \"B\", \"output\": \"2\"}\n"
                 "{\"instruction\": \"C\", \"input\": null, \"output\": \"\"}");
  const auto v = read_alpaca(path);
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0].prompt, "A x");
  EXPECT_EQ(v[1].prompt, "B");
  EXPECT_EQ(v[1].origin, path + ":4");
  EXPECT_EQ(v[2].prompt, "C");
  EXPECT_EQ(v[2].answer, "");
  EXPECT_EQ(v[2].origin, path + ":5");
}

struct BadCase {
  const char* name;
  std::string line;    // the malformed record
  std::string expect;  // part of the message
};

TEST(Alpaca, EveryMalformedKindStopsOrSkipsWithFileAndLine) {
  const std::string good = "{\"instruction\": \"ok\", \"output\": \"fine\"}";
  const std::vector<BadCase> cases{
      {"bad_json", "{\"instruction\": \"a\", ", "bad JSON"},
      {"not_object", "[\"instruction\", \"output\"]", "must be a JSON object, found array"},
      {"missing", "{\"instruction\": \"a\"}", "field 'output' is missing"},
      {"mistyped", "{\"instruction\": \"a\", \"output\": 5}",
       "field 'output' should be a string, found number"},
      {"mistyped_input", "{\"instruction\": \"a\", \"input\": [], \"output\": \"b\"}",
       "field 'input' should be a string, found array"},
      {"empty_instruction", "{\"instruction\": \"  \", \"output\": \"b\"}",
       "field 'instruction' is empty"},
      {"bad_utf8", "{\"instruction\": \"\xC3\x28\", \"output\": \"b\"}", "bad JSON"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    // The bad record sits on line 3, between good ones.
    const std::string path =
        write_file(std::string("alpaca_bad_") + c.name + ".jsonl",
                   good + "\n" + good + "\n" + c.line + "\n" + good + "\n");
    const std::string msg = error_of([&] { read_alpaca(path); });
    EXPECT_CONTAINS(msg, path + ":3: ");
    EXPECT_CONTAINS(msg, c.expect);
    ReadOptions skip;
    skip.policy = BadRecordPolicy::Skip;
    ReadReport rep;
    const auto v = read_alpaca(path, skip, &rep);
    EXPECT_EQ(v.size(), 3u);
    EXPECT_EQ(rep.records, 3u);
    EXPECT_EQ(rep.skipped, 1u);
    ASSERT_EQ(rep.problems.size(), 1u);
    EXPECT_CONTAINS(rep.problems[0], path + ":3: ");
    EXPECT_CONTAINS(rep.problems[0], c.expect);
    EXPECT_EQ(v[2].origin, path + ":4");
  }
}

TEST(Alpaca, ArrayElementsReportTheirOwnLine) {
  const std::string path = write_file("alpaca_array_bad.json",
                                      "[\n"
                                      "{\"instruction\": \"a\", \"output\": \"b\"},\n"
                                      "{\"instruction\": \"a\",\n"
                                      "  \"output\": 7},\n"
                                      "{\"instruction\": \"c\", \"output\": \"d\"},\n"
                                      "]\n");
  const std::string msg = error_of([&] { read_alpaca(path); });
  EXPECT_CONTAINS(msg, path + ":3: field 'output' should be a string");
  ReadOptions skip;
  skip.policy = BadRecordPolicy::Skip;
  ReadReport rep;
  const auto v = read_alpaca(path, skip, &rep);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[1].origin, path + ":5");
  // The trailing comma is a missing element on the closing line.
  EXPECT_EQ(rep.skipped, 2u);
  ASSERT_EQ(rep.problems.size(), 2u);
  EXPECT_CONTAINS(rep.problems[1], path + ":6: empty array element");
}

TEST(Alpaca, StructuralDamageAlwaysStops) {
  ReadOptions skip;
  skip.policy = BadRecordPolicy::Skip;
  const std::string open = write_file("unclosed.json",
                                      "\n[\n{\"instruction\": \"a\", \"output\": \"b\"},\n"
                                      "{\"instruction\": \"a\", \"output\": \"b\"}\n");
  EXPECT_CONTAINS(error_of([&] { read_alpaca(open, skip); }),
                  open + ":2: the JSON array opened here is never closed");
  const std::string str = write_file("unclosed_string.json",
                                     "[\n{\"instruction\": \"a\", \"output\": \"b\"},\n"
                                     "{\"instruction\": \"a\", \"output\": \"b}]\n");
  EXPECT_CONTAINS(error_of([&] { read_alpaca(str, skip); }), str + ":3: unterminated string");
  const std::string tail = write_file("tail.json",
                                      "[{\"instruction\": \"a\", \"output\": \"b\"}]\n\n"
                                      "{\"instruction\": \"c\"}\n");
  EXPECT_CONTAINS(error_of([&] { read_alpaca(tail, skip); }),
                  tail + ":3: unexpected text after the end of the JSON array");
}

TEST(Alpaca, NothingUsableIsAnError) {
  ReadOptions skip;
  skip.policy = BadRecordPolicy::Skip;
  const std::string path = write_file("all_bad.jsonl", "{\"a\": 1}\n{\"b\": 2}\n");
  ReadReport rep;
  EXPECT_CONTAINS(error_of([&] { read_alpaca(path, skip, &rep); }),
                  path + ": no usable Alpaca record (2 malformed, 2 in total)");
  const std::string empty = write_file("empty.jsonl", "\n\n");
  EXPECT_CONTAINS(error_of([&] { read_alpaca(empty); }), "no usable Alpaca record");
  EXPECT_CONTAINS(error_of([&] { read_alpaca("/nonexistent/dir/x.jsonl"); }),
                  "/nonexistent/dir/x.jsonl: cannot open data file");
}

TEST(Alpaca, PolicyParsing) {
  EXPECT_EQ(parse_bad_record_policy("skip"), BadRecordPolicy::Skip);
  EXPECT_EQ(parse_bad_record_policy("stop"), BadRecordPolicy::Stop);
  EXPECT_CONTAINS(error_of([] { parse_bad_record_policy("ignore"); }), "unknown value 'ignore'");
}

// ---- PKU-SafeRLHF -----------------------------------------------------------------------------
std::string pku_record(const std::string& prompt, int better, int safer, bool safe0, bool safe1,
                       const std::string& extra = "") {
  return "{\"prompt\": \"" + prompt + "\", \"response_0\": \"r0 of " + prompt +
         "\", \"response_1\": \"r1 of " + prompt + "\", \"is_response_0_safe\": " +
         (safe0 ? "true" : "false") + ", \"is_response_1_safe\": " + (safe1 ? "true" : "false") +
         ", \"better_response_id\": " + std::to_string(better) +
         ", \"safer_response_id\": " + std::to_string(safer) + extra + "}";
}

TEST(SafeRlhf, Releases2023And2024AndPairs) {
  const std::string extra2024 =
      ", \"prompt_source\": \"Alpaca3-70B\", \"response_0_source\": \"Alpaca-7B\","
      " \"response_1_source\": \"Alpaca-7B\", \"response_0_harm_category\": {\"Violence\": true,"
      " \"Privacy\": false}, \"response_1_harm_category\": {}, \"response_0_severity_level\": 2,"
      " \"response_1_severity_level\": 0, \"response_0_sha256\": \"ab\", \"response_1_sha256\": \"cd\"";
  const std::string path = write_file(
      "pku.jsonl", pku_record("p0", 1, 0, true, false) + "\n" +
                       pku_record("p1", 0, 1, false, true, extra2024) + "\n" +
                       pku_record("p2", 0, 0, false, true) + "\n");
  ReadReport rep;
  const auto v = read_safe_rlhf(path, {}, &rep);
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[1].prompt, "p1");
  EXPECT_TRUE(v[1].is_safe[1]);
  EXPECT_FALSE(v[1].is_safe[0]);
  EXPECT_EQ(v[1].better_id, 0);
  EXPECT_EQ(v[1].safer_id, 1);

  const PreferencePair h = helpfulness_pair(v[0]);
  EXPECT_EQ(h.better, "r1 of p0");
  EXPECT_EQ(h.worse, "r0 of p0");
  const SafetyPair s = harmlessness_pair(v[1]);
  EXPECT_EQ(s.safer, "r1 of p1");
  EXPECT_EQ(s.unsafer, "r0 of p1");
  EXPECT_TRUE(s.is_safer_safe);
  EXPECT_FALSE(s.is_unsafer_safe);
  EXPECT_FALSE(s.inconsistent());
  // Record 3 calls response 0 safer but labels it unsafe and response 1 safe.
  EXPECT_TRUE(harmlessness_pair(v[2]).inconsistent());
  EXPECT_TRUE(v[2].inconsistent());
  EXPECT_FALSE(v[0].inconsistent());
  EXPECT_EQ(rep.inconsistent, (std::vector<std::string>{path + ":3"}));

  // --inconsistent_pairs: stop (the reference's behaviour, the default) names the record;
  // drop removes it; keep keeps all three.
  EXPECT_EQ(parse_inconsistent_pair_policy("stop"), InconsistentPairPolicy::Stop);
  test::expect_error([&] { apply_inconsistent_pair_policy(v, InconsistentPairPolicy::Stop, "cm"); },
                     std::vector<std::string>{"cm: 1 record", path + ":3", "--inconsistent_pairs"});
  const auto dropped = apply_inconsistent_pair_policy(v, InconsistentPairPolicy::Drop, "cm");
  ASSERT_EQ(dropped.size(), 2u);
  EXPECT_EQ(dropped[1].prompt, "p1");
  EXPECT_EQ(apply_inconsistent_pair_policy(v, parse_inconsistent_pair_policy("keep"), "cm").size(),
            3u);
  test::expect_error([] { parse_inconsistent_pair_policy("ignore"); }, {"'ignore'"});
}

TEST(SafeRlhf, EveryMalformedKindNamesFileAndLine) {
  const std::string good = pku_record("ok", 0, 1, false, true);
  const std::vector<BadCase> cases{
      {"id_two", pku_record("x", 2, 0, true, true), "field 'better_response_id' should be 0 or 1, found 2"},
      {"id_negative", pku_record("x", 0, -1, true, true),
       "field 'safer_response_id' should be 0 or 1, found -1"},
      {"id_string",
       "{\"prompt\": \"x\", \"response_0\": \"a\", \"response_1\": \"b\", \"is_response_0_safe\": "
       "true, \"is_response_1_safe\": true, \"better_response_id\": \"1\", \"safer_response_id\": 0}",
       "field 'better_response_id' should be the integer 0 or 1, found string"},
      {"id_float",
       "{\"prompt\": \"x\", \"response_0\": \"a\", \"response_1\": \"b\", \"is_response_0_safe\": "
       "true, \"is_response_1_safe\": true, \"better_response_id\": 1.0, \"safer_response_id\": 0}",
       "field 'better_response_id' should be the integer 0 or 1, found number"},
      {"bool_mistyped",
       "{\"prompt\": \"x\", \"response_0\": \"a\", \"response_1\": \"b\", \"is_response_0_safe\": "
       "\"yes\", \"is_response_1_safe\": true, \"better_response_id\": 1, \"safer_response_id\": 0}",
       "field 'is_response_0_safe' should be a boolean, found string"},
      {"missing_response",
       "{\"prompt\": \"x\", \"response_0\": \"a\", \"is_response_0_safe\": true, "
       "\"is_response_1_safe\": true, \"better_response_id\": 1, \"safer_response_id\": 0}",
       "field 'response_1' is missing"},
      {"bad_json", "{\"prompt\": \"x\" \"response_0\": \"a\"}", "bad JSON"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = write_file(std::string("pku_bad_") + c.name + ".jsonl",
                                        good + "\n" + c.line + "\n" + good + "\n");
    const std::string msg = error_of([&] { read_safe_rlhf(path); });
    EXPECT_CONTAINS(msg, path + ":2: ");
    EXPECT_CONTAINS(msg, c.expect);
    ReadOptions skip;
    skip.policy = BadRecordPolicy::Skip;
    ReadReport rep;
    EXPECT_EQ(read_safe_rlhf(path, skip, &rep).size(), 2u);
    EXPECT_EQ(rep.skipped, 1u);
    ASSERT_FALSE(rep.problems.empty());
    EXPECT_CONTAINS(rep.problems[0], path + ":2: ");
  }
}

// ---- Prompt-only ------------------------------------------------------------------------------
TEST(Prompts, AnySourceDeduplicated) {
  const std::string a = write_file(
      "prompts_a.jsonl", pku_record("How?", 0, 0, true, true) + "\n" +
                             "{\"instruction\": \"Say\", \"input\": \"hi\", \"output\": \"x\"}\n" +
                             "{\"prompt\": \"Why?\"}\n" + pku_record("How?", 1, 1, true, true) + "\n");
  const std::string b = write_file("prompts_b.json", "[{\"prompt\": \"Say hi\"}, {\"prompt\": \"New\"}]");
  const auto mixed = load_prompt_mixture({{a, 1.0}, {b, 1.0}}, 42);
  std::vector<std::string> got;
  for (const auto& p : mixed) got.push_back(p.prompt);
  EXPECT_EQ(got, (std::vector<std::string>{"How?", "Say hi", "Why?", "New"}));
  EXPECT_EQ(mixed[1].origin, a + ":2");
  // Repeats from a proportion > 1 collapse too.
  EXPECT_EQ(load_prompt_mixture({{b, 3.0}}, 1).size(), 2u);
  const std::string bad = write_file("prompts_bad.jsonl", "{\"prompt\": \"a\"}\n{\"question\": \"b\"}\n");
  EXPECT_CONTAINS(error_of([&] { read_prompts(bad); }),
                  bad + ":2: neither a 'prompt' nor an 'instruction' field");
  const std::string typed = write_file("prompts_typed.jsonl", "{\"prompt\": 3}\n");
  EXPECT_CONTAINS(error_of([&] { read_prompts(typed); }),
                  typed + ":1: field 'prompt' should be a string, found number");
}

// ---- Mixing -----------------------------------------------------------------------------------
TEST(Mixing, DatasetSpecSyntax) {
  auto s = parse_dataset_spec("data/alpaca.json");
  EXPECT_EQ(s.path, "data/alpaca.json");
  EXPECT_EQ(s.proportion, 1.0);
  s = parse_dataset_spec("data/alpaca.json:0.25");
  EXPECT_EQ(s.path, "data/alpaca.json");
  EXPECT_EQ(s.proportion, 0.25);
  s = parse_dataset_spec("pku.jsonl:3");
  EXPECT_EQ(s.proportion, 3.0);
  s = parse_dataset_spec("odd:dir/file.jsonl");  // not a number: part of the path
  EXPECT_EQ(s.path, "odd:dir/file.jsonl");
  EXPECT_EQ(s.proportion, 1.0);
  EXPECT_CONTAINS(error_of([] { parse_dataset_spec("x.jsonl:-1"); }), "finite number >= 0, got -1");
  EXPECT_CONTAINS(error_of([] { parse_dataset_spec("x.jsonl:inf"); }), "finite number >= 0");
  EXPECT_CONTAINS(error_of([] { parse_dataset_spec(":0.5"); }), "the path is empty");
  EXPECT_CONTAINS(error_of([] { parse_dataset_spec(""); }), "empty argument");
}

TEST(Mixing, ProportionIndices) {
  // > 1 repeats whole passes in file order.
  auto idx = proportion_indices(4, 2.0, 7, 0);
  EXPECT_EQ(idx, (std::vector<size_t>{0, 1, 2, 3, 0, 1, 2, 3}));
  // A fraction takes a seeded subset of round(n·p) distinct records, in file order.
  idx = proportion_indices(10, 0.5, 7, 0);
  ASSERT_EQ(idx.size(), 5u);
  EXPECT_TRUE(std::is_sorted(idx.begin(), idx.end()));
  EXPECT_EQ(std::set<size_t>(idx.begin(), idx.end()).size(), 5u);
  EXPECT_EQ(idx, proportion_indices(10, 0.5, 7, 0));
  EXPECT_NE(idx, proportion_indices(10, 0.5, 8, 0));  // another seed, another subset
  EXPECT_NE(idx, proportion_indices(10, 0.5, 7, 1));  // another file, another subset
  // 2.5: two passes, then 5 more.
  idx = proportion_indices(10, 2.5, 7, 0);
  ASSERT_EQ(idx.size(), 25u);
  std::map<size_t, int> count;
  for (size_t i : idx) ++count[i];
  int threes = 0;
  for (auto [i, c] : count) {
    EXPECT_TRUE(c == 2 || c == 3) << i;
    threes += c == 3;
  }
  EXPECT_EQ(threes, 5);
  EXPECT_EQ(proportion_indices(10, 0.04, 1, 0).size(), 0u);  // rounds to 0
  EXPECT_EQ(proportion_indices(10, 0.06, 1, 0).size(), 1u);  // rounds to 1
  EXPECT_TRUE(proportion_indices(0, 3.0, 1, 0).empty());
}

TEST(Mixing, SftMixtureAppliesEachProportion) {
  std::string a_text, b_text;
  for (int i = 0; i < 6; ++i)
    a_text += "{\"instruction\": \"a" + std::to_string(i) + "\", \"output\": \"x\"}\n";
  for (int i = 0; i < 3; ++i)
    b_text += "{\"instruction\": \"b" + std::to_string(i) + "\", \"output\": \"y\"}\n";
  const std::string a = write_file("mix_a.jsonl", a_text), b = write_file("mix_b.jsonl", b_text);
  std::vector<ReadReport> reps;
  const auto v = load_sft_mixture({parse_dataset_spec(a + ":0.5"), parse_dataset_spec(b + ":2")},
                                  42, {}, &reps);
  ASSERT_EQ(v.size(), 3u + 6u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(v[i].prompt[0], 'a');
  for (size_t i = 3; i < 9; ++i) {
    std::string want = "b";
    want += std::to_string((i - 3) % 3);
    EXPECT_EQ(v[i].prompt, want);
  }
  ASSERT_EQ(reps.size(), 2u);
  EXPECT_EQ(reps[0].records, 6u);
  EXPECT_CONTAINS(error_of([&] { load_sft_mixture({{a, 0.0}}, 1); }), "selects no record");
}

// ---- Shuffle and split ------------------------------------------------------------------------
TEST(Shuffle, DeterministicPermutation) {
  const auto p = shuffled_indices(50, 42);
  std::vector<size_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < 50; ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_EQ(p, shuffled_indices(50, 42));
  EXPECT_NE(p, shuffled_indices(50, 43));
  EXPECT_NE(p, shuffled_indices(50, 42, 1));  // another epoch
  EXPECT_TRUE(shuffled_indices(0, 1).empty());
  EXPECT_EQ(shuffled_indices(1, 1), (std::vector<size_t>{0}));
  std::vector<std::string> v{"a", "b", "c", "d", "e"}, w = v;
  shuffle(v, 3);
  shuffle(w, 3);
  EXPECT_EQ(v, w);
}

TEST(Shuffle, AllOrdersEquallyLikely) {
  // 6000 shuffles of 3 items over consecutive streams: each of the 6 orders ~1000 times. A
  // biased Fisher-Yates (e.g. drawing j from [0, i) instead of [0, i]) misses orders entirely.
  std::map<std::vector<size_t>, int> count;
  for (uint64_t s = 0; s < 6000; ++s) ++count[shuffled_indices(3, 9, s)];
  ASSERT_EQ(count.size(), 6u);
  for (const auto& [order, c] : count) EXPECT_NEAR(c, 1000, 120);
}

TEST(Shuffle, TrainTestSplit) {
  const auto s = split_indices(100, 0.1, 42);
  EXPECT_EQ(s.test.size(), 10u);
  EXPECT_EQ(s.train.size(), 90u);
  std::set<size_t> all(s.train.begin(), s.train.end());
  for (size_t i : s.test) EXPECT_TRUE(all.insert(i).second) << "index " << i << " in both";
  EXPECT_EQ(all.size(), 100u);
  EXPECT_TRUE(std::is_sorted(s.test.begin(), s.test.end()));
  EXPECT_EQ(split_indices(100, 0.1, 42).test, s.test);
  EXPECT_NE(split_indices(100, 0.1, 43).test, s.test);
  std::vector<int> v(20);
  for (int i = 0; i < 20; ++i) v[size_t(i)] = i * 10;
  const auto [train, test] = train_test_split(v, 0.25, 5);
  EXPECT_EQ(train.size(), 15u);
  EXPECT_EQ(test.size(), 5u);
  EXPECT_CONTAINS(error_of([] { split_indices(10, 1.0, 1); }), "must be in [0, 1), got 1");
  EXPECT_CONTAINS(error_of([] { split_indices(1, 0.6, 1); }), "leaves nothing to train on");
}

}  // namespace
}  // namespace beaver::train
