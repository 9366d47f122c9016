#include "train/plot.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "csrc/error.h"
#include "csrc/image.h"

namespace beaver::plot {

namespace {
// A pixel coordinate from a computed position: far-off or non-finite positions (extreme
// metric values) are clamped before the conversion, which would overflow an int.
int pixel(double v) {
  return int(std::lround(std::isfinite(v) ? std::clamp(v, -1e6, 1e6) : 0.0));
}

constexpr Rgb kPalette[] = {{31, 119, 180}, {214, 39, 40}, {44, 160, 44}, {148, 103, 189},
                            {255, 127, 14}, {23, 190, 207}, {140, 86, 75}, {127, 127, 127}};
constexpr Rgb kInk{40, 40, 40};
constexpr Rgb kGrid{225, 225, 225};

struct Range {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  bool integers = true;  // every value added is a whole number
  void add(double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    integers = integers && v == std::round(v);
  }
};

// The axis a range is drawn on: rounded out to whole ticks.
struct Axis {
  double lo = 0, hi = 1, step = 0.25;
  std::vector<double> ticks;
  int decimals = 0;
  double frac(double v) const { return (v - lo) / (hi - lo); }
  std::string label(double v) const {
    char buf[32];
    const double a = std::max(std::fabs(lo), std::fabs(hi));
    if (a >= 1e6 || step < 1e-4)
      std::snprintf(buf, sizeof buf, "%.3g", v);
    else
      std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
  }
};

Axis make_axis(const Range& r) {
  Axis ax;
  const std::vector<double> t = tick_values(r.lo, r.hi, r.integers);
  ax.ticks = t;
  ax.lo = t.front();
  ax.hi = t.back();
  ax.step = t.size() > 1 ? t[1] - t[0] : 1;
  ax.decimals = std::max(0, int(-std::floor(std::log10(ax.step) + 1e-9)));
  return ax;
}

void draw_axes(Image& img, int x0, int y0, int x1, int y1, const Axis& xa, const Axis& ya) {
  for (double v : ya.ticks) {
    const int gy = pixel(y1 - ya.frac(v) * (y1 - y0));
    img.line(x0, gy, x1, gy, kGrid);
    const std::string lab = ya.label(v);
    img.text(x0 - 6 - Image::text_width(lab), gy - 3, lab, kInk);
  }
  for (double v : xa.ticks) {
    const int gx = pixel(x0 + xa.frac(v) * (x1 - x0));
    img.line(gx, y0, gx, y1, kGrid);
    const std::string lab = xa.label(v);
    img.text(gx - Image::text_width(lab) / 2, y1 + 6, lab, kInk);
  }
  img.line(x0, y0, x0, y1, kInk);
  img.line(x0, y1, x1, y1, kInk);
}

}  // namespace

std::vector<double> tick_values(double lo, double hi, bool integers) {
  if (!std::isfinite(lo) || !std::isfinite(hi) || lo > hi) lo = 0, hi = 1;
  lo = std::clamp(lo, -1e300, 1e300);  // keeps hi - lo and every tick finite
  hi = std::clamp(hi, -1e300, 1e300);
  if (hi - lo < 1e-12) {
    // Relative to the value too: 1 is nothing beside 1e300, and the range would stay empty.
    const double pad = integers ? std::max(1.0, std::fabs(lo) * 1e-6)
                                : std::max(1e-6, std::fabs(lo) * 0.05);
    lo -= pad;
    hi += pad;
  }
  // The smallest step of 1, 2 or 5 x 10^k (a whole number for integer data) whose multiples
  // around [lo, hi] make at most 6 intervals.
  const double mag = std::pow(10.0, std::floor(std::log10((hi - lo) / 6)));
  double step = mag, first = 0, last = 0;
  for (int i = 0; i < 1000; ++i) {  // ends within a few dozen for any finite range
    step = std::array<double, 3>{1, 2, 5}[size_t(i % 3)] * mag * std::pow(10.0, i / 3);
    if (integers && step < 1) continue;
    first = std::floor(lo / step + 1e-9);
    last = std::ceil(hi / step - 1e-9);
    if (last - first <= 6) break;
  }
  // A range no step fits (beyond double precision): its two ends are the ticks.
  if (!(step > 0) || !std::isfinite(step) || !(last >= first) || last - first > 6) return {lo, hi};
  std::vector<double> t;
  for (double k = first; k <= last; k += 1) t.push_back(k * step);
  if (t.size() < 2) t.push_back(t.back() + step);
  return t;
}

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
    yr.integers = false;  // metrics are measurements: ticks may fall between whole numbers
    const Axis xa = make_axis(xr), ya = make_axis(yr);
    const int x0 = left, x1 = W - right, y0 = oy + top, y1 = oy + H - bottom;
    draw_axes(img, x0, y0, x1, y1, xa, ya);
    img.text(x0, oy + 8, panels[p].title, kInk, 2);
    img.text(x1 - Image::text_width(xlabel), y1 + 20, xlabel, kInk);
    int legend_x = x0 + Image::text_width(panels[p].title, 2) + 20;
    for (size_t k = 0; k < panels[p].series.size(); ++k) {
      const Series& s = panels[p].series[k];
      const Rgb c = kPalette[k % 8];
      const auto px = [&](double v) { return x0 + xa.frac(v) * (x1 - x0); };
      const auto py = [&](double v) { return y1 - ya.frac(v) * (y1 - y0); };
      for (size_t i = 0; i + 1 < s.x.size(); ++i)
        img.line(px(s.x[i]), py(s.y[i]), px(s.x[i + 1]), py(s.y[i + 1]), c, 2);
      if (s.x.size() == 1) img.rect(pixel(px(s.x[0])) - 2, pixel(py(s.y[0])) - 2,
                                    pixel(px(s.x[0])) + 2, pixel(py(s.y[0])) + 2, c);
      if (panels[p].series.size() > 1) {
        img.rect(legend_x, oy + 10, legend_x + 10, oy + 14, c);
        img.text(legend_x + 14, oy + 9, s.name, kInk);
        legend_x += 24 + Image::text_width(s.name);
      }
    }
  }
  img.write_png(png_path);
}

void histogram(const std::string& png_path, const std::string& title, const std::string& xlabel,
               const std::vector<Group>& groups, int bins) {
  BEAVER_CHECK(bins > 0, "histogram ", png_path, ": bins must be positive");
  Range xr;
  for (const auto& g : groups)
    for (double v : g.values) xr.add(v);
  xr.integers = false;
  // Bins tile the rounded axis, so their edges fall on round values too.
  const Axis xa = make_axis(xr);
  std::vector<std::vector<double>> counts(groups.size(), std::vector<double>(size_t(bins), 0));
  Range yr;
  yr.add(0);
  for (size_t g = 0; g < groups.size(); ++g) {
    for (double v : groups[g].values) {
      if (!std::isfinite(v)) continue;
      const double fb = xa.frac(v) * bins;
      int b = std::isfinite(fb) ? int(std::clamp(fb, -1.0, double(bins))) : 0;
      b = std::clamp(b, 0, bins - 1);
      counts[g][size_t(b)] += 1;
    }
    for (double c : counts[g]) yr.add(c);
  }
  const Axis ya = make_axis(yr);
  const int W = 720, H = 340, left = 80, right = 20, top = 44, bottom = 40;
  Image img(W, H);
  const int x0 = left, x1 = W - right, y0 = top, y1 = H - bottom;
  draw_axes(img, x0, y0, x1, y1, xa, ya);
  img.text(x0, 8, title, kInk, 2);
  img.text(x1 - Image::text_width(xlabel), y1 + 20, xlabel, kInk);
  img.text(x0 - Image::text_width("count") / 2, y0 - 12, "count", kInk);
  int legend_x = x0 + Image::text_width(title, 2) + 20;
  const double bw = double(x1 - x0) / bins;
  for (size_t g = 0; g < groups.size(); ++g) {
    const Rgb c = kPalette[g % 8];
    // Outlined bars so overlapping groups stay readable.
    for (int b = 0; b < bins; ++b) {
      const double cnt = counts[g][size_t(b)];
      if (cnt <= 0) continue;
      const int bx0 = int(x0 + b * bw) + 1, bx1 = int(x0 + (b + 1) * bw) - 1;
      const int by = pixel(y1 - ya.frac(cnt) * (y1 - y0));
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

Rgb palette_color(size_t k) { return kPalette[k % 8]; }

Image plane(const std::string& title, const std::string& xlabel, const std::string& ylabel,
            const std::vector<PlanePoint>& points, PlaneFrame* frame) {
  BEAVER_CHECK(!points.empty(), "plane '", title, "': no points to draw");
  Range xr, yr;
  for (const auto& p : points) {
    for (double v : {p.x, p.x_lo, p.x_hi, p.y, p.y_lo, p.y_hi})
      BEAVER_CHECK(std::isfinite(v), "plane '", title, "': point '", p.name,
                   "' has a non-finite value");
    BEAVER_CHECK(p.x_lo <= p.x && p.x <= p.x_hi && p.y_lo <= p.y && p.y <= p.y_hi, "plane '",
                 title, "': point '", p.name, "' lies outside its own interval");
    xr.add(p.x_lo);
    xr.add(p.x_hi);
    yr.add(p.y_lo);
    yr.add(p.y_hi);
  }
  xr.integers = yr.integers = false;
  const Axis xa = make_axis(xr), ya = make_axis(yr);
  const int W = 760, H = 560, left = 80, right = 30, top = 48, bottom = 44;
  Image img(W, H);
  PlaneFrame f{left, top, W - right, H - bottom, xa.lo, xa.hi, ya.lo, ya.hi};
  draw_axes(img, f.x0, f.y0, f.x1, f.y1, xa, ya);
  img.text(f.x0, 8, title, kInk, 2);
  img.text(f.x1 - Image::text_width(xlabel), f.y1 + 22, xlabel, kInk);
  img.text(f.x0 - 40, f.y0 - 14, ylabel, kInk);
  // Boxes taken by markers and names, so that a name goes where it hides nothing drawn before.
  struct Box {
    int x0, y0, x1, y1;
    bool overlaps(const Box& o) const { return x0 <= o.x1 && o.x0 <= x1 && y0 <= o.y1 && o.y0 <= y1; }
  };
  std::vector<Box> taken;
  for (const auto& p : points)
    taken.push_back({pixel(f.px(p.x)) - 3, pixel(f.py(p.y)) - 3, pixel(f.px(p.x)) + 3,
                     pixel(f.py(p.y)) + 3});
  for (size_t k = 0; k < points.size(); ++k) {
    const PlanePoint& p = points[k];
    const Rgb c = palette_color(k);
    const int cx = pixel(f.px(p.x)), cy = pixel(f.py(p.y));
    const int xl = pixel(f.px(p.x_lo)), xh = pixel(f.px(p.x_hi));
    const int yl = pixel(f.py(p.y_lo)), yh = pixel(f.py(p.y_hi));  // yl below yh on screen
    if (xh > xl) {
      img.line(xl, cy, xh, cy, c);
      img.line(xl, cy - 3, xl, cy + 3, c);
      img.line(xh, cy - 3, xh, cy + 3, c);
    }
    if (yl > yh) {
      img.line(cx, yl, cx, yh, c);
      img.line(cx - 3, yl, cx + 3, yl, c);
      img.line(cx - 3, yh, cx + 3, yh, c);
    }
    img.rect(cx - 3, cy - 3, cx + 3, cy + 3, c);
    const int tw = Image::text_width(p.name), th = 7;
    const std::array<std::pair<int, int>, 6> places = {{{cx + 8, cy - 10},
                                                        {cx - 8 - tw, cy - 10},
                                                        {cx + 8, cy + 4},
                                                        {cx - 8 - tw, cy + 4},
                                                        {cx - tw / 2, cy - 16},
                                                        {cx - tw / 2, cy + 9}}};
    Box chosen{places[0].first, places[0].second, places[0].first + tw, places[0].second + th};
    for (const auto& [tx, ty] : places) {
      const Box b{tx, ty, tx + tw, ty + th};
      if (b.x0 < 0 || b.x1 >= W || b.y0 < 0 || b.y1 >= H) continue;
      bool free = true;
      for (const Box& o : taken) free = free && !b.overlaps(o);
      if (free) {
        chosen = b;
        break;
      }
    }
    taken.push_back(chosen);
    img.text(chosen.x0, chosen.y0, p.name, c);
  }
  if (frame) *frame = f;
  return img;
}

namespace {
// Calls fn(record) for every non-blank line of a metrics JSONL file; a line that is not JSON
// is refused with its number.
template <typename Fn>
void for_each_record(const std::string& jsonl_path, Fn&& fn) {
  std::ifstream f(jsonl_path);
  if (!f) BEAVER_IO_FAIL(jsonl_path, "cannot open metrics file");
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
    fn(j);
  }
}
}  // namespace

std::vector<Series> read_metrics(const std::string& jsonl_path, const std::string& xkey,
                                 const std::vector<std::string>& ykeys) {
  std::vector<Series> out(ykeys.size());
  for (size_t k = 0; k < ykeys.size(); ++k) out[k].name = ykeys[k];
  for_each_record(jsonl_path, [&](nlohmann::json& j) {
    if (!j.is_object() || !j.contains(xkey) || !j[xkey].is_number()) return;
    const double x = j[xkey].get<double>();
    for (size_t k = 0; k < ykeys.size(); ++k) {
      if (j.contains(ykeys[k]) && j[ykeys[k]].is_number()) {
        out[k].x.push_back(x);
        out[k].y.push_back(j[ykeys[k]].get<double>());
      }
    }
  });
  return out;
}

std::vector<std::string> metric_keys(const std::string& jsonl_path) {
  std::vector<std::string> keys;
  for_each_record(jsonl_path, [&](const nlohmann::json& j) {
    if (!j.is_object()) return;
    for (const auto& [k, v] : j.items())
      if (v.is_number() && std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
  });
  return keys;
}

}  // namespace beaver::plot
