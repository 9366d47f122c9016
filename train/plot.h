// Training curves and histograms as PNG files (csrc/image.h), so every run can be looked at
// without Python: `beaver plot` turns a metrics JSONL file into stacked line panels, and the
// evaluation writes cost histograms with the same code; `beaver report --plane` draws the
// harm-versus-helpfulness plane of several policies.
#pragma once

#include <string>
#include <vector>

#include "csrc/image.h"

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

// The k-th colour of the palette every plot cycles through (8 colours).
Rgb palette_color(size_t k);

// A policy as a point in a plane: its value on each axis with a 95% interval (lo = hi = the
// value when there is none), drawn as a marker with cross bars and its name beside it.
struct PlanePoint {
  std::string name;
  double x = 0, x_lo = 0, x_hi = 0;
  double y = 0, y_lo = 0, y_hi = 0;
};
// Where the plot area lies in the image (inclusive pixel corners) and the data range it shows,
// with the mapping from data to pixel coordinates that the drawing uses.
struct PlaneFrame {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  double x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;
  double px(double x) const { return x0 + (x - x_lo) / (x_hi - x_lo) * (x1 - x0); }
  double py(double y) const { return y1 - (y - y_lo) / (y_hi - y_lo) * (y1 - y0); }
};
// Point k is drawn in palette_color(k): a 7x7 marker at (x, y), a horizontal bar from x_lo to
// x_hi and a vertical one from y_lo to y_hi with end caps, and its name beside it (placed
// where it overlaps no earlier name or marker, if one of four places allows). The axes cover
// every interval, rounded out to ticks (tick_values). Every value must be finite and
// lo <= value <= hi; `frame`, when given, receives the layout.
Image plane(const std::string& title, const std::string& xlabel, const std::string& ylabel,
            const std::vector<PlanePoint>& points, PlaneFrame* frame = nullptr);

// Reads a metrics JSONL file (one JSON object per line) and returns, for each y key, the
// (x, y) pairs of the lines that carry both keys with numeric values. Lines that are not
// valid JSON are an error naming the file and line.
std::vector<Series> read_metrics(const std::string& jsonl_path, const std::string& xkey,
                                 const std::vector<std::string>& ykeys);

// The keys with a numeric value on some line of a metrics JSONL file, in first-seen order
// (what `beaver plot --y` can draw). Same errors as read_metrics.
std::vector<std::string> metric_keys(const std::string& jsonl_path);

}  // namespace beaver::plot
