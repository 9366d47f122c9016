#include "train/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "csrc/error.h"
#include "csrc/image.h"

namespace beaver::plot {

namespace {

constexpr Rgb kPalette[] = {{31, 119, 180}, {214, 39, 40}, {44, 160, 44}, {148, 103, 189},
                            {255, 127, 14}, {23, 190, 207}, {140, 86, 75}, {127, 127, 127}};
constexpr Rgb kInk{40, 40, 40};
constexpr Rgb kGrid{225, 225, 225};

std::string short_number(double v) {
  char buf[32];
  const double a = std::fabs(v);
  if (a != 0 && (a >= 1e5 || a < 1e-3))
    std::snprintf(buf, sizeof buf, "%.1e", v);
  else
    std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

struct Range {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  void finish() {
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (hi - lo < 1e-12) {
      const double pad = std::max(1e-6, std::fabs(lo) * 0.05);
      lo -= pad;
      hi += pad;
    }
  }
};

// Axes box with 5 ticks per axis; returns nothing, maps via the lambdas the caller builds.
void draw_axes(Image& img, int x0, int y0, int x1, int y1, const Range& xr, const Range& yr) {
  for (int i = 0; i <= 4; ++i) {
    const int gy = y1 - (y1 - y0) * i / 4, gx = x0 + (x1 - x0) * i / 4;
    img.line(x0, gy, x1, gy, kGrid);
    img.line(gx, y0, gx, y1, kGrid);
    const std::string ylab = short_number(yr.lo + (yr.hi - yr.lo) * i / 4);
    img.text(x0 - 6 - Image::text_width(ylab), gy - 3, ylab, kInk);
    const std::string xlab = short_number(xr.lo + (xr.hi - xr.lo) * i / 4);
    img.text(gx - Image::text_width(xlab) / 2, y1 + 6, xlab, kInk);
  }
  img.line(x0, y0, x0, y1, kInk);
  img.line(x0, y1, x1, y1, kInk);
}

}  // namespace

void line_panels(const std::string& png_path, const std::string& xlabel,
                 const std::vector<Panel>& panels) {
  BEAVER_CHECK(!panels.empty(), "plot ", png_path, ": nothing to plot");
  const int W = 720, H = 260, left = 80, right = 20, top = 28, bottom = 40;
  Image img(W, H * int(panels.size()));
  for (size_t p = 0; p < panels.size(); ++p) {
    const int oy = H * int(p);
    Range xr, yr;
    for (const auto& s : panels[p].series) {
      for (double v : s.x) xr.add(v);
      for (double v : s.y) yr.add(v);
    }
    xr.finish();
    yr.finish();
    const int x0 = left, x1 = W - right, y0 = oy + top, y1 = oy + H - bottom;
    draw_axes(img, x0, y0, x1, y1, xr, yr);
    img.text(x0, oy + 8, panels[p].title, kInk, 2);
    img.text(x1 - Image::text_width(xlabel), y1 + 20, xlabel, kInk);
    int legend_x = x0 + Image::text_width(panels[p].title, 2) + 20;
    for (size_t k = 0; k < panels[p].series.size(); ++k) {
      const Series& s = panels[p].series[k];
      const Rgb c = kPalette[k % 8];
      const auto px = [&](double v) { return x0 + (v - xr.lo) / (xr.hi - xr.lo) * (x1 - x0); };
      const auto py = [&](double v) { return y1 - (v - yr.lo) / (yr.hi - yr.lo) * (y1 - y0); };
      for (size_t i = 0; i + 1 < s.x.size(); ++i)
        img.line(px(s.x[i]), py(s.y[i]), px(s.x[i + 1]), py(s.y[i + 1]), c, 2);
      if (s.x.size() == 1) img.rect(int(px(s.x[0])) - 2, int(py(s.y[0])) - 2,
                                    int(px(s.x[0])) + 2, int(py(s.y[0])) + 2, c);
      if (panels[p].series.size() > 1) {
        img.rect(legend_x, oy + 10, legend_x + 10, oy + 14, c);
        img.text(legend_x + 14, oy + 9, s.name, kInk);
        legend_x += 24 + Image::text_width(s.name);
      }
    }
  }
  img.write_png(png_path);
}

void histogram(const std::string& png_path, const std::string& title,
               const std::vector<Group>& groups, int bins) {
  BEAVER_CHECK(bins > 0, "histogram ", png_path, ": bins must be positive");
  Range xr;
  for (const auto& g : groups)
    for (double v : g.values) xr.add(v);
  xr.finish();
  std::vector<std::vector<double>> counts(groups.size(), std::vector<double>(size_t(bins), 0));
  Range yr;
  yr.add(0);
  for (size_t g = 0; g < groups.size(); ++g) {
    for (double v : groups[g].values) {
      if (!std::isfinite(v)) continue;
      int b = int((v - xr.lo) / (xr.hi - xr.lo) * bins);
      b = std::clamp(b, 0, bins - 1);
      counts[g][size_t(b)] += 1;
    }
    for (double c : counts[g]) yr.add(c);
  }
  yr.finish();
  const int W = 720, H = 320, left = 80, right = 20, top = 28, bottom = 40;
  Image img(W, H);
  const int x0 = left, x1 = W - right, y0 = top, y1 = H - bottom;
  draw_axes(img, x0, y0, x1, y1, xr, yr);
  img.text(x0, 8, title, kInk, 2);
  int legend_x = x0 + Image::text_width(title, 2) + 20;
  const double bw = double(x1 - x0) / bins;
  for (size_t g = 0; g < groups.size(); ++g) {
    const Rgb c = kPalette[g % 8];
    // Outlined bars so overlapping groups stay readable.
    for (int b = 0; b < bins; ++b) {
      const double cnt = counts[g][size_t(b)];
      if (cnt <= 0) continue;
      const int bx0 = int(x0 + b * bw) + 1, bx1 = int(x0 + (b + 1) * bw) - 1;
      const int by = int(y1 - cnt / yr.hi * (y1 - y0));
      img.line(bx0, y1, bx0, by, c, 2);
      img.line(bx0, by, bx1, by, c, 2);
      img.line(bx1, by, bx1, y1, c, 2);
    }
    img.rect(legend_x, 10, legend_x + 10, 14, c);
    const std::string label = groups[g].name + " (" + std::to_string(groups[g].values.size()) + ")";
    img.text(legend_x + 14, 9, label, kInk);
    legend_x += 24 + Image::text_width(label);
  }
  img.write_png(png_path);
}

std::vector<Series> read_metrics(const std::string& jsonl_path, const std::string& xkey,
                                 const std::vector<std::string>& ykeys) {
  std::ifstream f(jsonl_path);
  if (!f) BEAVER_IO_FAIL(jsonl_path, "cannot open metrics file");
  std::vector<Series> out(ykeys.size());
  for (size_t k = 0; k < ykeys.size(); ++k) out[k].name = ykeys[k];
  std::string line;
  int lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      BEAVER_FAIL(jsonl_path, ":", lineno, ": not valid JSON (", e.what(), ")");
    }
    if (!j.is_object() || !j.contains(xkey) || !j[xkey].is_number()) continue;
    const double x = j[xkey].get<double>();
    for (size_t k = 0; k < ykeys.size(); ++k) {
      if (j.contains(ykeys[k]) && j[ykeys[k]].is_number()) {
        out[k].x.push_back(x);
        out[k].y.push_back(j[ykeys[k]].get<double>());
      }
    }
  }
  return out;
}

std::vector<std::string> metric_keys(const std::string& jsonl_path) {
  std::ifstream f(jsonl_path);
  if (!f) BEAVER_IO_FAIL(jsonl_path, "cannot open metrics file");
  std::vector<std::string> keys;
  std::string line;
  int lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      BEAVER_FAIL(jsonl_path, ":", lineno, ": not valid JSON (", e.what(), ")");
    }
    if (!j.is_object()) continue;
    for (const auto& [k, v] : j.items())
      if (v.is_number() && std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
  }
  return keys;
}

}  // namespace beaver::plot
