// libFuzzer target for the metrics reader behind `beaver plot` (train/plot.h): any file must
// yield series (of equal-length x and y, one per requested key) or be refused with
// beaver::Error. The first byte picks which keys are requested. What was read is then drawn as
// `beaver plot` draws it, so extreme or odd values reach the plotting code too.
#include <cstdio>
#include <cstdlib>

#include "csrc/error.h"
#include "tools/fuzz/fuzz_util.h"
#include "train/plot.h"

using namespace beaver;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::Scratch scratch;
  if (size < 1) return 0;
  static const std::vector<std::string> keys[] = {
      {"loss", "grad_norm"}, {"reward", "cost", "lambda"}, {"step"}, {"", "a"}};
  static const char* xkeys[] = {"step", "epoch", "loss", ""};
  const auto& ykeys = keys[data[0] & 3];
  const char* xkey = xkeys[(data[0] >> 2) & 3];
  const std::string path = scratch.put("metrics.jsonl", data + 1, size - 1);
  try {
    const auto series = plot::read_metrics(path, xkey, ykeys);
    if (series.size() != ykeys.size()) std::abort();
    for (const auto& s : series)
      if (s.x.size() != s.y.size()) std::abort();
    std::vector<plot::Panel> panels;
    for (const auto& s : series)
      if (!s.x.empty()) panels.push_back({s.name, {s}});
    if (!panels.empty()) plot::line_panels((scratch.dir() / "metrics.png").string(), xkey, panels);
  } catch (const Error&) {
    // Refusing malformed input is the expected outcome.
  }
  return 0;
}
