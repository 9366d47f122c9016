// `beaver plot`: turns a metrics JSONL file (what every training stage writes) into PNG curves,
// one stacked panel per metric.
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
    std::vector<std::string> y;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--input,-i", a->input, "Metrics JSONL file")->required();
  cmd->add_option("--output,-o", a->output, "PNG file to write")->required();
  cmd->add_option("--x", a->x, "Key of the x axis (default: step)");
  cmd->add_option("--y", a->y, "Keys to plot, one panel each (comma separated)")
      ->required()
      ->delimiter(',');
  cmd->callback([a] {
    // A key the file never carries is a typo or the wrong file: say which keys there are.
    const std::vector<std::string> keys = plot::metric_keys(a->input);
    std::vector<std::string> wanted = a->y;
    wanted.push_back(a->x);
    for (const std::string& k : wanted) {
      if (std::find(keys.begin(), keys.end(), k) != keys.end()) continue;
      std::string have;
      for (const std::string& h : keys) have += (have.empty() ? "" : ", ") + h;
      BEAVER_FAIL("plot: no key '", k, "' in ", a->input, "; its keys are: ",
                  have.empty() ? "(none: the file has no numeric values)" : have);
    }
    const auto series = plot::read_metrics(a->input, a->x, a->y);
    std::vector<plot::Panel> panels;
    for (const auto& s : series) {
      if (s.x.empty()) {
        log_warn("plot: no numeric '", s.name, "' with '", a->x, "' in ", a->input);
        continue;
      }
      panels.push_back(plot::Panel{s.name, {s}});
    }
    BEAVER_CHECK(!panels.empty(), "plot: none of the requested keys appear in ", a->input);
    plot::line_panels(a->output, a->x, panels);
    log_info("plot: wrote ", a->output, " (", panels.size(), " panels)");
  });
}

}  // namespace beaver::tools
