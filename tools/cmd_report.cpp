// `beaver report`: the paper-style results table from several `beaver eval` folders evaluated
// on the same prompts. Columns: ground-truth harmful rate on harmful prompts and overall and
// ground-truth helpfulness on benign prompts (toy-world oracle), the cost model's harmful rate,
// mean reward and cost, and the reward model's win rate against the first (baseline) model,
// computed prompt by prompt from the two responses.jsonl files (train/eval_stats.h).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "csrc/atomic_file.h"
#include "csrc/log.h"
#include "tools/commands.h"
#include "train/eval_stats.h"

namespace beaver::tools {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json read_json(const fs::path& p) {
  std::ifstream f(p);
  if (!f) BEAVER_IO_FAIL(p.string(), "cannot open");
  try {
    return json::parse(f);
  } catch (const json::exception& e) {
    BEAVER_FAIL(p.string(), ": not valid JSON (", e.what(), ")");
  }
}

struct Row {
  std::string label;
  fs::path dir;
  json summary;
  std::vector<std::string> prompts;
  std::vector<eval_stats::Scored> scored;
};

Row load_row(const std::string& spec) {
  const auto eq = spec.find('=');
  BEAVER_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < spec.size(), "report: --eval '",
               spec, "' must be LABEL=EVAL_DIR");
  Row r{spec.substr(0, eq), fs::path(spec.substr(eq + 1)), {}, {}, {}};
  r.summary = read_json(r.dir / "summary.json");
  const fs::path resp = r.dir / "responses.jsonl";
  std::ifstream f(resp);
  if (!f) BEAVER_IO_FAIL(resp.string(), "cannot open");
  std::string line;
  int lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (line.empty()) continue;
    try {
      const json j = json::parse(line);
      r.prompts.push_back(j.at("prompt").get<std::string>());
      r.scored.push_back({j.at("reward").get<double>(), j.at("cost").get<double>()});
    } catch (const json::exception& e) {
      BEAVER_FAIL(resp.string(), ":", lineno, ": ", e.what());
    }
  }
  return r;
}

std::string pct(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f%%", 100.0 * x);
  return b;
}
std::string num(double x, const char* fmt = "%.2f") {
  char b[32];
  std::snprintf(b, sizeof b, fmt, x);
  return b;
}

}  // namespace

void add_report_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("report", "Results table from several `beaver eval` folders");
  struct Args {
    std::vector<std::string> evals;
    std::string output;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--eval", a->evals, "LABEL=EVAL_DIR, repeated; the first is the baseline")
      ->required();
  cmd->add_option("--output", a->output, "Also write the table (Markdown) and JSON here (.md)");
  cmd->callback([a] {
    std::vector<Row> rows;
    for (const auto& s : a->evals) rows.push_back(load_row(s));
    const Row& base = rows.front();
    std::string md =
        "| model | harmful rate, harmful prompts (truth) | harmful rate, all (truth) | "
        "helpfulness, benign (truth, of 4) | harmful rate (cost model) | mean reward | "
        "mean cost | RM win rate vs " + base.label + " |\n|---|---|---|---|---|---|---|---|\n";
    json out = json::array();
    for (const Row& r : rows) {
      BEAVER_CHECK(r.prompts == base.prompts, "report: ", r.dir.string(), " answered other prompts than ",
                   base.dir.string(), "; evaluate every model on the same prompt file");
      const json& s = r.summary.at("summary");
      const bool truth = r.summary.contains("ground_truth");
      const json g = truth ? r.summary.at("ground_truth") : json::object();
      const auto cmp = eval_stats::compare(base.scored, r.scored);
      md += "| " + r.label + " | " +
            (truth ? pct(g.at("harmful_rate_harmful_prompts").get<double>()) : "-") + " | " +
            (truth ? pct(g.at("harmful_rate_overall").get<double>()) : "-") + " | " +
            (truth ? num(g.at("helpfulness_benign").get<double>()) : "-") + " | " +
            pct(s.at("harmful_rate").get<double>()) + " | " +
            num(s.at("mean_reward").get<double>()) + " | " + num(s.at("mean_cost").get<double>()) +
            " | " + (&r == &base ? "-" : pct(cmp.b_win_rate)) + " |\n";
      json j{{"label", r.label}, {"eval_dir", r.dir.string()}, {"summary", s},
             {"rm_win_rate_vs_baseline", cmp.b_win_rate}};
      if (truth) j["ground_truth"] = g;
      out.push_back(j);
    }
    std::fputs(md.c_str(), stdout);
    if (!a->output.empty()) {
      AtomicFile f(a->output);
      f.write(md);
      f.commit();
      AtomicFile fj(fs::path(a->output).replace_extension(".json").string());
      fj.write(out.dump(2) + "\n");
      fj.commit();
      log_info("report: wrote ", a->output);
    }
  });
}

}  // namespace beaver::tools
