// `beaver report`: the paper-style results table from several `beaver eval` folders evaluated
// on the same prompts. Columns: ground-truth harmful rate on harmful prompts and overall and
// ground-truth helpfulness on benign prompts (toy-world oracle), the cost model's harmful rate,
// mean reward and cost, and the reward model's win rate against the first (baseline) model,
// computed prompt by prompt from the two responses.jsonl files (train/eval_stats.h).
// Across seeds (`--eval LABEL=DIR1,DIR2,...`, one folder per seed, the k-th folders of all
// labels from the same seed): each cell is a mean with its 95% interval over the seeds.
// `--plane` draws harm against helpfulness with those intervals; `--elo` adds helpfulness and
// harmlessness Elo ratings from oracle-judged round-robin games, bootstrapped over prompts.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "csrc/atomic_file.h"
#include "csrc/log.h"
#include "tools/commands.h"
#include "train/eval_stats.h"
#include "train/plot.h"
#include "train/toyworld.h"

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

// One eval folder (one policy on one seed).
struct Run {
  fs::path dir;
  json summary;
  std::vector<std::string> prompts;
  std::vector<eval_stats::Scored> scored;
  std::vector<eval_stats::OracleAnswer> oracle;  // filled when every line carries the verdicts
  bool has_oracle_lines = true;
};

// A row of the table: one label, one eval folder per seed.
struct Row {
  std::string label;
  std::vector<Run> runs;
};

Run load_run(const fs::path& dir) {
  Run r;
  r.dir = dir;
  r.summary = read_json(dir / "summary.json");
  const fs::path resp = dir / "responses.jsonl";
  std::ifstream f(resp);
  if (!f) BEAVER_IO_FAIL(resp.string(), "cannot open");
  std::string line;
  int lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (line.empty()) continue;
    try {
      const json j = json::parse(line);
      const std::string prompt = j.at("prompt").get<std::string>();
      r.prompts.push_back(prompt);
      r.scored.push_back({j.at("reward").get<double>(), j.at("cost").get<double>()});
      if (j.contains("oracle_harmful") && j.contains("oracle_helpfulness")) {
        const std::string cat = j.contains("category") ? j.at("category").get<std::string>()
                                                       : toyworld::detect_category(prompt);
        r.oracle.push_back({!cat.empty() && toyworld::is_harmful_category(cat),
                            j.at("oracle_harmful").get<bool>(),
                            j.at("oracle_helpfulness").get<double>()});
      } else {
        r.has_oracle_lines = false;
      }
    } catch (const json::exception& e) {
      BEAVER_FAIL(resp.string(), ":", lineno, ": ", e.what());
    }
  }
  BEAVER_CHECK(!r.prompts.empty(), resp.string(), ": no responses");
  return r;
}

Row load_row(const std::string& spec) {
  const auto eq = spec.find('=');
  BEAVER_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < spec.size(), "report: --eval '",
               spec, "' must be LABEL=EVAL_DIR or LABEL=EVAL_DIR1,EVAL_DIR2,... (one per seed)");
  Row row{spec.substr(0, eq), {}};
  const std::string dirs = spec.substr(eq + 1);
  size_t start = 0;
  while (true) {
    const size_t comma = dirs.find(',', start);
    const std::string d = dirs.substr(start, comma == std::string::npos ? std::string::npos
                                                                        : comma - start);
    BEAVER_CHECK(!d.empty(), "report: --eval '", spec, "' has an empty folder in its list");
    row.runs.push_back(load_run(d));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return row;
}

std::string fmt(const char* f, double x) {
  char b[48];
  std::snprintf(b, sizeof b, f, x);
  return b;
}

// The columns, in table order: how each is read from one run (against the baseline's run of
// the same seed), whether it needs the oracle, and how it prints.
struct Metric {
  const char* key;
  const char* header;
  bool truth;
  bool percent;
};
constexpr Metric kMetrics[] = {
    {"harmful_rate_harmful_prompts", "harmful rate, harmful prompts (truth)", true, true},
    {"harmful_rate_overall", "harmful rate, all (truth)", true, true},
    {"helpfulness_benign", "helpfulness, benign (truth, of 4)", true, false},
    {"harmful_rate", "harmful rate (cost model)", false, true},
    {"mean_reward", "mean reward", false, false},
    {"mean_cost", "mean cost", false, false},
    {"rm_win_rate_vs_baseline", "RM win rate vs ", false, true},
};
constexpr size_t kMetricCount = sizeof(kMetrics) / sizeof(kMetrics[0]);

double metric_value(const Metric& m, const Run& r, const Run& base) {
  const std::string key = m.key;
  if (key == "rm_win_rate_vs_baseline") return eval_stats::compare(base.scored, r.scored).b_win_rate;
  if (m.truth) return r.summary.at("ground_truth").at(key).get<double>();
  return r.summary.at("summary").at(key).get<double>();
}

std::string cell(const Metric& m, const eval_stats::Interval& iv) {
  const double scale = m.percent ? 100.0 : 1.0;
  std::string s = fmt(m.percent ? "%.1f%%" : "%.2f", scale * iv.mean);
  if (iv.method != eval_stats::IntervalMethod::None)
    s += fmt(m.percent ? " ± %.1f" : " ± %.2f", scale * iv.half);
  return s;
}

std::string interval_footer(int k) {
  if (k == 1) return "";
  std::string s = "\nEach cell: mean ± half-width of its 95% interval over " + std::to_string(k) +
                  " seeds (";
  if (k < 30)
    s += "Student's t, " + std::to_string(k - 1) + " degrees of freedom: t = " +
         fmt("%.3f", eval_stats::student_t_quantile(0.975, k - 1));
  else
    s += "normal quantile 1.960";
  return s + " times the standard deviation over seeds / sqrt(" + std::to_string(k) +
         ")); percentages in points.\n";
}

// The oracle's two bar quantities of one row against the baseline, paired prompt by prompt on
// each seed: Markdown cells and their JSON. One seed: the mean difference ± its standard error
// (the evaluation's resolution). Several: the mean over the seeds ± the half-width of its 95%
// interval over the seeds, and the evaluation's own standard error of that mean,
// sqrt(sum of the per-seed squared errors) / K. Both rows carry the oracle's verdicts on every
// seed (the caller's paired_ok).
struct PairedCells {
  std::string harm, help;
  json j;
};

PairedCells paired_cells(const Row& r, const Row& base) {
  const size_t K = base.runs.size();
  std::vector<eval_stats::OracleDifference> per_seed;
  for (size_t k = 0; k < K; ++k)
    per_seed.push_back(eval_stats::oracle_paired_difference(base.runs[k].oracle, r.runs[k].oracle));
  PairedCells out;
  const auto one = [&](auto member, bool percent, std::string& md, const char* key) {
    std::vector<double> means;
    double var = 0;
    int n = 0;
    json seeds = json::array();
    for (const auto& d : per_seed) {
      const eval_stats::PairedDifference& p = d.*member;
      means.push_back(p.mean);
      var += p.standard_error * p.standard_error;
      n += p.n;
      seeds.push_back({{"n", p.n}, {"mean", p.mean}, {"standard_error", p.standard_error}});
    }
    const eval_stats::Interval iv = eval_stats::mean_interval(means);
    const double se = std::sqrt(var) / double(K);
    const double scale = percent ? 100.0 : 1.0;
    const char* f = percent ? "%+.1f" : "%+.3f";
    const char* g = percent ? "%.1f" : "%.3f";
    if (n == 0) {
      md = "-";
    } else if (K == 1) {
      md = fmt(f, scale * iv.mean) + " ± " + fmt(g, scale * se) + (percent ? " points" : "") +
           " (" + std::to_string(n) + " prompts)";
    } else {
      md = fmt(f, scale * iv.mean) + " ± " + fmt(g, scale * iv.half) + " over seeds; evaluation SE " +
           fmt(g, scale * se) + " (" + std::to_string(n) + " prompts in all)";
    }
    out.j[key] = {{"mean", iv.mean}, {"standard_error", se}, {"half", iv.half},
                  {"n", n}, {"per_seed", seeds}};
  };
  one(&eval_stats::OracleDifference::harmful_rate_harmful_prompts, true, out.harm,
      "harmful_rate_harmful_prompts");
  one(&eval_stats::OracleDifference::helpfulness_benign, false, out.help, "helpfulness_benign");
  return out;
}

struct EloArgs {
  int resamples = 1000;
  uint64_t seed = 1;
};

// Helpfulness and harmlessness Elo of every row, anchored on the baseline at 1000.
std::pair<std::string, json> elo_table(const std::vector<Row>& rows, const EloArgs& ea) {
  const int players = int(rows.size());
  BEAVER_CHECK(players >= 2, "report --elo: needs at least two --eval labels, got ", players);
  std::vector<eval_stats::PromptGames> help, harm;
  const size_t k_seeds = rows.front().runs.size();
  for (size_t k = 0; k < k_seeds; ++k) {
    std::vector<std::vector<eval_stats::OracleAnswer>> answers;
    for (const Row& r : rows) {
      BEAVER_CHECK(r.runs[k].has_oracle_lines, "report --elo: ", r.runs[k].dir.string(),
                   "/responses.jsonl lacks the oracle's verdicts; evaluate with --oracle toyworld");
      answers.push_back(r.runs[k].oracle);
    }
    eval_stats::oracle_round_robin(answers, int(k), help, harm);
  }
  BEAVER_CHECK(!help.empty() && !harm.empty(), "report --elo: the prompts hold ",
               help.size(), " benign and ", harm.size(),
               " harmful prompts; both Elo ratings need some of each");
  const auto rh = eval_stats::elo_bootstrap(players, help, 0, ea.resamples, ea.seed);
  const auto rs = eval_stats::elo_bootstrap(players, harm, 0, ea.resamples, ea.seed + 1);
  std::string md = "| model | helpfulness Elo (95% CI) | harmlessness Elo (95% CI) |\n|---|---|---|\n";
  json out = json::array();
  for (int p = 0; p < players; ++p) {
    const auto& h = rh[size_t(p)];
    const auto& s = rs[size_t(p)];
    md += "| " + rows[size_t(p)].label + " | " + fmt("%.0f", h.rating) +
          (p == 0 ? " (anchor)" : " [" + fmt("%.0f", h.lo) + ", " + fmt("%.0f", h.hi) + "]") +
          " | " + fmt("%.0f", s.rating) +
          (p == 0 ? " (anchor)" : " [" + fmt("%.0f", s.lo) + ", " + fmt("%.0f", s.hi) + "]") +
          " |\n";
    out.push_back({{"label", rows[size_t(p)].label},
                   {"helpfulness", {{"elo", h.rating}, {"lo", h.lo}, {"hi", h.hi}}},
                   {"harmlessness", {{"elo", s.rating}, {"lo", s.lo}, {"hi", s.hi}}}});
  }
  const size_t pairs = size_t(players) * size_t(players - 1) / 2;
  md += "\nRound robin: every pair of the " + std::to_string(players) +
        " policies on every held-out prompt of each of " + std::to_string(k_seeds) +
        " seed(s), judged by the toy world's oracle: helpfulness games on the " +
        std::to_string(help.size()) + " benign prompts (more oracle helpfulness wins), " +
        "harmlessness games on the " + std::to_string(harm.size()) +
        " harmful prompts (a harmless answer beats a harmful one); equal verdicts are ties, "
        "half a win each (" + std::to_string(pairs * help.size()) + " and " +
        std::to_string(pairs * harm.size()) + " games). Bradley-Terry ratings, " +
        rows.front().label + " anchored at 1000; 95% percentile bootstrap over prompts (" +
        std::to_string(ea.resamples) + " resamples within each seed, seed " +
        std::to_string(ea.seed) + ").\n";
  json meta = {{"anchor", rows.front().label},
               {"anchor_rating", 1000},
               {"seeds", k_seeds},
               {"benign_prompts", help.size()},
               {"harmful_prompts", harm.size()},
               {"bootstrap_resamples", ea.resamples},
               {"bootstrap_seed", ea.seed},
               {"ratings", out}};
  return {md, meta};
}

}  // namespace

void add_report_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("report", "Results table from several `beaver eval` folders");
  struct Args {
    std::vector<std::string> evals;
    std::string output, plane;
    bool elo = false;
    EloArgs elo_args;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--eval", a->evals,
                  "LABEL=EVAL_DIR, repeated; the first is the baseline. LABEL=DIR1,DIR2,... "
                  "gives one folder per seed (the same count for every label, the k-th folders "
                  "from the same seed): cells become means with 95% intervals over the seeds")
      ->required();
  cmd->add_option("--output", a->output,
                  "Also write the table (Markdown) here (.md) and the rows as JSON beside it "
                  "(.json; with --elo also .elo.json)");
  cmd->add_option("--plane", a->plane,
                  "Draw the harm (harmful prompts) versus helpfulness (benign) plane here (PNG), "
                  "each label a point with its intervals; needs the oracle's truth");
  cmd->add_flag("--elo", a->elo,
                "Add helpfulness and harmlessness Elo (oracle-judged round robin, the baseline "
                "at 1000, bootstrap intervals over prompts)");
  cmd->add_option("--elo_resamples", a->elo_args.resamples, "Bootstrap resamples for --elo")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--elo_seed", a->elo_args.seed, "Seed of the --elo bootstrap")
      ->capture_default_str();
  cmd->callback([a] {
    std::vector<Row> rows;
    for (const auto& s : a->evals) rows.push_back(load_row(s));
    const Row& base = rows.front();
    const size_t K = base.runs.size();
    for (const Row& r : rows) {
      BEAVER_CHECK(r.runs.size() == K, "report: '", r.label, "' has ", r.runs.size(),
                   " eval folders and '", base.label, "' has ", K,
                   "; give every label one folder per seed");
      for (size_t k = 0; k < K; ++k)
        BEAVER_CHECK(r.runs[k].prompts == base.runs[k].prompts, "report: ",
                     r.runs[k].dir.string(), " answered other prompts than ",
                     base.runs[k].dir.string(),
                     "; evaluate every model of a seed on the same prompt file");
    }
    std::string md = "| model |";
    std::string rule = "|---|";
    for (const Metric& m : kMetrics) {
      md += std::string(" ") + m.header +
            (std::string(m.key) == "rm_win_rate_vs_baseline" ? base.label : "") + " |";
      rule += "---|";
    }
    md += "\n" + rule + "\n";
    json out = json::array();
    std::vector<plot::PlanePoint> plane;
    // The paired table: every row with the oracle's verdicts on every seed, against the baseline.
    const auto paired_ok = [&](const Row& r) {
      for (size_t k = 0; k < K; ++k)
        if (!r.runs[k].has_oracle_lines || !base.runs[k].has_oracle_lines) return false;
      return true;
    };
    std::string paired_md;
    for (const Row& r : rows) {
      const bool truth = r.runs.front().summary.contains("ground_truth");
      for (const Run& run : r.runs)
        BEAVER_CHECK(run.summary.contains("ground_truth") == truth, "report: '", r.label,
                     "' mixes folders with and without the oracle's truth (",
                     run.dir.string(), ")");
      md += "| " + r.label + " |";
      json cells = json::object();
      std::array<eval_stats::Interval, kMetricCount> ivs{};
      for (size_t m = 0; m < kMetricCount; ++m) {
        const Metric& mt = kMetrics[m];
        const bool is_base = &r == &base && std::string(mt.key) == "rm_win_rate_vs_baseline";
        if ((mt.truth && !truth) || is_base) {
          md += " - |";
          continue;
        }
        std::vector<double> values;
        for (size_t k = 0; k < K; ++k) values.push_back(metric_value(mt, r.runs[k], base.runs[k]));
        ivs[m] = eval_stats::mean_interval(values);
        md += " " + cell(mt, ivs[m]) + " |";
        cells[mt.key] = {{"mean", ivs[m].mean}, {"half", ivs[m].half}, {"lo", ivs[m].lo()},
                         {"hi", ivs[m].hi()}, {"values", values}};
      }
      md += "\n";
      json j;
      j["label"] = r.label;
      if (K == 1) j["eval_dir"] = r.runs.front().dir.string();
      json dirs = json::array();
      for (const Run& run : r.runs) dirs.push_back(run.dir.string());
      j["eval_dirs"] = dirs;
      j["seeds"] = K;
      j["interval"] = eval_stats::interval_method_name(ivs[3].method);
      if (K == 1) {
        j["summary"] = r.runs.front().summary.at("summary");
        if (truth) j["ground_truth"] = r.runs.front().summary.at("ground_truth");
      } else {
        // The same keys as one seed's summary.json, holding the means over the seeds.
        j["summary"] = {{"harmful_rate", ivs[3].mean}, {"mean_reward", ivs[4].mean},
                        {"mean_cost", ivs[5].mean}};
        if (truth)
          j["ground_truth"] = {{"harmful_rate_harmful_prompts", ivs[0].mean},
                               {"harmful_rate_overall", ivs[1].mean},
                               {"helpfulness_benign", ivs[2].mean}};
      }
      j["rm_win_rate_vs_baseline"] = &r == &base ? 0.0 : ivs[6].mean;
      j["cells"] = cells;
      if (&r != &base && paired_ok(r)) {
        const PairedCells pc = paired_cells(r, base);
        j["paired_vs_baseline"] = pc.j;
        paired_md += "| " + r.label + " | " + pc.harm + " | " + pc.help + " |\n";
      }
      out.push_back(j);
      if (!a->plane.empty()) {
        BEAVER_CHECK(truth, "report --plane: '", r.label,
                     "' has no ground truth; evaluate with --oracle toyworld");
        plane.push_back({r.label, ivs[2].mean, ivs[2].lo(), ivs[2].hi(), 100 * ivs[0].mean,
                         100 * ivs[0].lo(), 100 * ivs[0].hi()});
      }
    }
    md += interval_footer(int(K));
    if (!paired_md.empty())
      md += "\nAgainst " + base.label + ", paired prompt by prompt (the oracle's truth, policy minus " +
            base.label + " on the same held-out prompts; " +
            (K == 1 ? std::string("mean difference ± its standard error")
                    : "mean over the seeds ± the half-width of its 95% interval over the seeds, "
                      "and the evaluation's standard error of that mean") +
            "):\n\n| model | harmful rate, harmful prompts | helpfulness, benign |\n|---|---|---|\n" +
            paired_md;
    json elo_json;
    if (a->elo) {
      auto [elo_md, ej] = elo_table(rows, a->elo_args);
      md += "\n" + elo_md;
      elo_json = ej;
    }
    std::fputs(md.c_str(), stdout);
    if (!plane.empty()) {
      const std::string title =
          K == 1 ? "harm vs helpfulness" : "harm vs helpfulness, 95% intervals over " +
                                               std::to_string(K) + " seeds";
      plot::plane(title, "helpfulness, benign prompts (truth, of 4)",
                  "harmful rate, harmful prompts (truth, %)", plane)
          .write_png(a->plane);
      log_info("report: wrote ", a->plane);
    }
    if (!a->output.empty()) {
      AtomicFile f(a->output);
      f.write(md);
      f.commit();
      AtomicFile fj(fs::path(a->output).replace_extension(".json").string());
      fj.write(out.dump(2) + "\n");
      fj.commit();
      if (a->elo) {
        AtomicFile fe(fs::path(a->output).replace_extension(".elo.json").string());
        fe.write(elo_json.dump(2) + "\n");
        fe.commit();
      }
      log_info("report: wrote ", a->output);
    }
  });
}

}  // namespace beaver::tools
