// `beaver plot`: turns a metrics JSONL file (what every training stage writes) into PNG curves,
// stacked panels of one or more metrics each: `--y loss,eval_loss --y lr` draws the training
// and the eval loss in one panel and the learning rate in a second.
#include <algorithm>
#include <memory>
#include <sstream>

#include "csrc/log.h"
#include "tools/commands.h"
#include "train/plot.h"

namespace beaver::tools {

void add_plot_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("plot", "Plot metrics from a JSONL file into a PNG");
  struct Args {
    std::string input, output, x = "step";
    std::vector<std::string> y;  // one entry per --y: the panel's comma-separated keys
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--input,-i", a->input, "Metrics JSONL file")->required();
  cmd->add_option("--output,-o", a->output, "PNG file to write")->required();
  cmd->add_option("--x", a->x, "Key of the x axis (default: step)");
  cmd->add_option("--y", a->y,
                  "Keys of one panel, comma separated (drawn together, with a legend); repeat "
                  "--y for more panels")
      ->required();
  cmd->callback([a] {
    // Each --y is one panel: its comma-separated keys drawn together.
    std::vector<std::vector<std::string>> groups;
    for (const std::string& group : a->y) {
      std::vector<std::string> ks;
      std::stringstream ss(group);
      for (std::string k; std::getline(ss, k, ',');)
        if (!k.empty()) ks.push_back(k);
      groups.push_back(std::move(ks));
    }
    // A key the file never carries is a typo or the wrong file: say which keys there are.
    const std::vector<std::string> keys = plot::metric_keys(a->input);
    std::vector<std::string> wanted{a->x};
    for (const auto& g : groups) wanted.insert(wanted.end(), g.begin(), g.end());
    for (const std::string& k : wanted) {
      if (std::find(keys.begin(), keys.end(), k) != keys.end()) continue;
      std::string have;
      for (const std::string& h : keys) have += (have.empty() ? "" : ", ") + h;
      BEAVER_FAIL("plot: no key '", k, "' in ", a->input, "; its keys are: ",
                  have.empty() ? "(none: the file has no numeric values)" : have);
    }
    std::vector<plot::Panel> panels;
    for (const auto& group : groups) {
      plot::Panel panel;
      for (const auto& s : plot::read_metrics(a->input, a->x, group)) {
        if (s.x.empty()) {
          log_warn("plot: no numeric '", s.name, "' with '", a->x, "' in ", a->input);
          continue;
        }
        panel.title += (panel.title.empty() ? "" : ", ") + s.name;
        panel.series.push_back(s);
      }
      if (!panel.series.empty()) panels.push_back(std::move(panel));
    }
    BEAVER_CHECK(!panels.empty(), "plot: none of the requested keys appear in ", a->input);
    plot::line_panels(a->output, a->x, panels);
    log_info("plot: wrote ", a->output, " (", panels.size(), " panels)");
  });
}

}  // namespace beaver::tools
