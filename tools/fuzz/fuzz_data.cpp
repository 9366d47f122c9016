// libFuzzer target for the data set readers (train/data.h): Alpaca SFT records, PKU-SafeRLHF
// preference records and prompt-only records, as a JSON array or JSONL. The first byte chooses
// the reader (0-2) and the bad-record policy (bit 2: skip); the rest is the file. A read must
// return records or refuse with beaver::Error; accepted records must satisfy the reader's
// contract (ids 0/1, non-empty Alpaca instruction, an origin), checked here.
#include <cstdio>
#include <cstdlib>

#include "csrc/error.h"
#include "tools/fuzz/fuzz_util.h"
#include "train/data.h"

using namespace beaver;

namespace {
[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "reader contract broken: %s\n", what);
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::Scratch scratch;
  if (size < 1) return 0;
  const int reader = (data[0] & 3) % 3;
  train::ReadOptions opt;
  opt.policy = (data[0] & 4) ? train::BadRecordPolicy::Skip : train::BadRecordPolicy::Stop;
  const std::string path = scratch.put("data.jsonl", data + 1, size - 1);
  train::ReadReport report;
  try {
    if (reader == 0) {
      for (const auto& r : train::read_alpaca(path, opt, &report))
        if (r.origin.empty()) broken("alpaca record without origin");
    } else if (reader == 1) {
      for (const auto& r : train::read_safe_rlhf(path, opt, &report)) {
        if (r.better_id < 0 || r.better_id > 1 || r.safer_id < 0 || r.safer_id > 1)
          broken("response id outside 0/1");
        (void)train::helpfulness_pair(r);
        (void)train::harmlessness_pair(r);
      }
    } else {
      (void)train::dedup_prompts(train::read_prompts(path, opt, &report));
    }
    if (report.problems.size() > train::ReadReport::kMaxProblems) broken("too many problems kept");
    if (opt.policy == train::BadRecordPolicy::Stop && report.skipped != 0)
      broken("records skipped under the stop policy");
  } catch (const Error&) {
    // Refusing malformed input is the expected outcome.
  }
  return 0;
}
