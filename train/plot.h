// Training curves and histograms as PNG files (csrc/image.h), so every run can be looked at
// without Python: `beaver plot` turns a metrics JSONL file into stacked line panels, and the
// evaluation writes cost histograms with the same code.
#pragma once

#include <string>
#include <vector>

namespace beaver::plot {

struct Series {
  std::string name;
  std::vector<double> x, y;
};

// One panel per entry of `panels` (each may hold several series), stacked vertically.
struct Panel {
  std::string title;
  std::vector<Series> series;
};
void line_panels(const std::string& png_path, const std::string& xlabel,
                 const std::vector<Panel>& panels);

// Overlaid histograms of several groups over a shared range, `bins` bins; the x axis is labelled
// `xlabel`, the y axis "count", and the legend names each group with its size.
struct Group {
  std::string name;
  std::vector<double> values;
};
void histogram(const std::string& png_path, const std::string& title, const std::string& xlabel,
               const std::vector<Group>& groups, int bins = 30);

// The tick values of an axis that covers [lo, hi]: a round step (1, 2 or 5 x 10^k, at most 6
// intervals), starting and ending on a multiple of it. With `integers` (data that are whole
// numbers, like steps) the step is a whole number too. Axes of line_panels and histogram use
// these; the x axis counts in integers when every x value is one.
std::vector<double> tick_values(double lo, double hi, bool integers);

// Reads a metrics JSONL file (one JSON object per line) and returns, for each y key, the
// (x, y) pairs of the lines that carry both keys with numeric values. Lines that are not
// valid JSON are an error naming the file and line.
std::vector<Series> read_metrics(const std::string& jsonl_path, const std::string& xkey,
                                 const std::vector<std::string>& ykeys);

// The keys with a numeric value on some line of a metrics JSONL file, in first-seen order
// (what `beaver plot --y` can draw). Same errors as read_metrics.
std::vector<std::string> metric_keys(const std::string& jsonl_path);

}  // namespace beaver::plot
