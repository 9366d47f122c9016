// PNG writer and plots: the file is a valid, deflated PNG (signature, chunk CRCs, a zlib stream
// that inflates to the same pixels), axes tick at round values (whole numbers for steps), lines
// land where the data says, and metrics files are read with errors that name file and line.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <zlib.h>

#include "csrc/error.h"
#include "csrc/image.h"
#include "format_fixtures.h"
#include "train/plot.h"

namespace beaver {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

TEST(Image, Crc32KnownAnswer) {
  const char* s = "123456789";
  EXPECT_EQ(crc32(reinterpret_cast<const uint8_t*>(s), 9), 0xCBF43926u);
}

// Reads the PNG's chunks (checking each CRC) and returns IHDR's width and height and the
// concatenated IDAT bytes.
struct PngParts {
  uint32_t width = 0, height = 0;
  std::vector<uint8_t> idat;
  std::vector<std::string> types;
};
PngParts parse_png(const std::vector<uint8_t>& d) {
  PngParts out;
  const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  EXPECT_GT(d.size(), 8u + 25u);
  if (d.size() < 8 + 25) return out;
  EXPECT_EQ(std::memcmp(d.data(), sig, 8), 0);
  size_t off = 8;
  while (off + 12 <= d.size()) {
    const uint32_t len = be32(&d[off]);
    const std::string type(reinterpret_cast<const char*>(&d[off + 4]), 4);
    out.types.push_back(type);
    EXPECT_LE(off + 12 + len, d.size());
    if (off + 12 + len > d.size()) break;
    EXPECT_EQ(crc32(&d[off + 4], len + 4), be32(&d[off + 8 + len])) << type;
    if (type == "IHDR") {
      out.width = be32(&d[off + 8]);
      out.height = be32(&d[off + 12]);
    }
    if (type == "IDAT") out.idat.insert(out.idat.end(), &d[off + 8], &d[off + 8 + len]);
    off += 12 + len;
  }
  EXPECT_EQ(off, d.size());
  return out;
}

TEST(Image, PngRoundTripsThroughInflateAndIsCompressed) {
  // A plot-like picture: flat background, grid lines, text, a coloured block, and one noisy
  // strip so that not every row is trivially compressible.
  const int W = 640, H = 480;
  Image img(W, H, {255, 255, 255});
  for (int k = 0; k < 8; ++k) img.line(40, 40 + 50 * k, W - 10, 40 + 50 * k, {225, 225, 225});
  img.line(40, 10, 40, H - 30, {40, 40, 40}, 2);
  img.text(60, 12, "EPISODE COST 0.25", {40, 40, 40}, 2);
  img.rect(100, 100, 180, 160, {214, 39, 40});
  uint32_t lcg = 12345;
  for (int x = 0; x < W; ++x) {
    lcg = lcg * 1664525u + 1013904223u;
    img.set(x, H - 5, {uint8_t(lcg >> 24), uint8_t(lcg >> 16), uint8_t(lcg >> 8)});
  }
  const auto path = fs::temp_directory_path() / "beaver_test_roundtrip.png";
  img.write_png(path.string());
  const auto d = slurp(path);
  const PngParts png = parse_png(d);
  EXPECT_EQ(png.types, (std::vector<std::string>{"IHDR", "IDAT", "IEND"}));
  ASSERT_EQ(png.width, uint32_t(W));
  ASSERT_EQ(png.height, uint32_t(H));
  const size_t row = size_t(W) * 3 + 1, raw_size = row * size_t(H);
  std::vector<uint8_t> raw(raw_size + 1);
  uLongf n = uLongf(raw.size());
  ASSERT_EQ(uncompress(raw.data(), &n, png.idat.data(), uLong(png.idat.size())), Z_OK);
  ASSERT_EQ(size_t(n), raw_size);
  size_t mismatches = 0;
  for (int y = 0; y < H; ++y) {
    ASSERT_EQ(raw[size_t(y) * row], 0) << "filter type of row " << y;
    for (int x = 0; x < W; ++x) {
      const uint8_t* p = &raw[size_t(y) * row + 1 + size_t(x) * 3];
      const Rgb c = img.get(x, y);
      mismatches += p[0] != c.r || p[1] != c.g || p[2] != c.b;
    }
  }
  EXPECT_EQ(mismatches, 0u);
  // Deflated, not stored: a plot compresses to a small fraction of its raw scanlines (stored
  // blocks would make the file larger than raw_size).
  EXPECT_LT(d.size(), raw_size / 20) << "PNG of " << d.size() << " bytes for " << raw_size
                                     << " bytes of scanlines";
  fs::remove(path);
}

TEST(Image, TextAndLinesDraw) {
  Image img(60, 20);
  img.text(1, 1, "A1", {0, 0, 0});
  int dark = 0;
  for (int y = 0; y < 20; ++y)
    for (int x = 0; x < 60; ++x) dark += img.get(x, y).r == 0;
  EXPECT_GT(dark, 10);
  img.line(0, 19, 59, 19, {1, 2, 3});
  EXPECT_EQ(img.get(30, 19).g, 2);
  EXPECT_THROW(Image(0, 5), Error);
}

// Found by fuzz_metrics: a metric of 1e20 put a line end 6.2e10 pixels away, whose pixel count
// overflowed an int (undefined behaviour; on x86 one step, so only the end points were drawn).
// The segment is clipped to the image first: its visible part is drawn, pixel by pixel.
TEST(Image, LinesToFarPointsDrawTheirVisiblePart) {
  Image img(50, 20);
  img.line(0, 10, 6.2e10, 10, {1, 2, 3});
  img.line(-3e12, -3e12, 3e12, 3e12, {4, 5, 6});  // the diagonal, from far outside to far outside
  img.line(-1e15, 40, 1e15, 40, {7, 8, 9});         // entirely below the image: nothing
  for (int x = 0; x < 50; ++x) {
    if (x == 10) continue;  // where the diagonal crosses
    EXPECT_EQ(img.get(x, 10).g, 2) << "x " << x;
  }
  for (int d = 0; d < 20; ++d) EXPECT_EQ(img.get(d, d).g, 5) << "d " << d;
  for (int y = 0; y < 20; ++y)
    for (int x = 0; x < 50; ++x) EXPECT_NE(img.get(x, y).g, 8);
}

// Found by fuzz_metrics (tests/data/fuzz/metrics/regression-far-step-*.bin): one record at
// step 1e308 gave an empty range that the padding of 1 could not widen (1e300 + 1 == 1e300), a
// zero step and no ticks; the single point's marker then sat 3e16 pixels away.
TEST(Plot, ExtremeRangesStillGetTwoOrderedTicksAndDraw) {
  const double big = std::numeric_limits<double>::max();
  for (const auto& [lo, hi] : std::vector<std::pair<double, double>>{
           {1e308, 1e308}, {-big, big}, {1e300, 1e300}, {-8, 1e308}, {1, 1 + 1e-15}, {0, 0}}) {
    for (const bool integers : {true, false}) {
      const auto t = plot::tick_values(lo, hi, integers);
      ASSERT_GE(t.size(), 2u) << lo << " " << hi;
      for (size_t i = 0; i < t.size(); ++i) {
        EXPECT_TRUE(std::isfinite(t[i])) << lo << " " << hi;
        if (i > 0) EXPECT_LT(t[i - 1], t[i]) << lo << " " << hi << " integers " << integers;
      }
    }
  }
  test::TempDir tmp;
  const std::string png = tmp / "far.png";
  plot::line_panels(png, "step", {plot::Panel{"loss", {plot::Series{"loss", {1e308}, {5}}}},
                                  plot::Panel{"far", {plot::Series{"far", {1, 2}, {-8, 1e20}}}}});
  EXPECT_GT(fs::file_size(png), 100u);
}

TEST(Plot, TicksAreRoundAndStepsAreWholeNumbers) {
  using V = std::vector<double>;
  // A 2-step RL run: ticks at the steps, not at quarters of a step.
  EXPECT_EQ(plot::tick_values(1, 2, true), (V{1, 2}));
  EXPECT_EQ(plot::tick_values(0, 1, true), (V{0, 1}));
  EXPECT_EQ(plot::tick_values(1, 1071, true), (V{0, 200, 400, 600, 800, 1000, 1200}));
  EXPECT_EQ(plot::tick_values(3, 3, true), (V{2, 3, 4}));  // one point: a whole step either side
  for (double v : plot::tick_values(-1e308, 1e308, false)) EXPECT_TRUE(std::isfinite(v)) << v;
  const V frac = plot::tick_values(0.013, 0.93, false);
  ASSERT_EQ(frac.size(), 6u);
  for (size_t i = 0; i < frac.size(); ++i) EXPECT_NEAR(frac[i], 0.2 * double(i), 1e-12);
  // Over many ranges: the ticks cover the range, at most 7 of them, each a whole multiple of a
  // step of 1, 2 or 5 x 10^k (a whole number for integer data).
  uint64_t lcg = 99;
  auto uniform = [&] {
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return double(lcg >> 11) / double(1ull << 53);
  };
  for (int trial = 0; trial < 2000; ++trial) {
    const bool integers = trial % 2 == 0;
    const double scale = std::pow(10.0, std::floor(uniform() * 10 - 4));
    double lo = (uniform() - 0.3) * scale, hi = lo + uniform() * scale;
    if (integers) {
      lo = std::round(lo);
      hi = std::round(hi);
    }
    const V t = plot::tick_values(lo, hi, integers);
    ASSERT_GE(t.size(), 2u);
    ASSERT_LE(t.size(), 7u) << lo << " " << hi;
    EXPECT_LE(t.front(), lo);
    EXPECT_GE(t.back(), hi);
    const double step = t[1] - t[0];
    const double mant = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
    EXPECT_TRUE(std::fabs(mant - 1) < 1e-6 || std::fabs(mant - 2) < 1e-6 ||
                std::fabs(mant - 5) < 1e-6) << "step " << step << " for " << lo << ".." << hi;
    if (integers) {
      EXPECT_EQ(step, std::round(step));
    }
    for (double v : t) EXPECT_NEAR(v / step, std::round(v / step), 1e-6) << v;
  }
}

TEST(Plot, ReadsMetricsAndNamesBadLines) {
  const auto path = fs::temp_directory_path() / "beaver_metrics.jsonl";
  {
    std::ofstream f(path);
    f << "{\"step\": 1, \"loss\": 2.0}\n{\"step\": 2, \"loss\": 1.5, \"acc\": 0.5}\n\n"
         "{\"note\": \"no step\"}\n";
  }
  auto s = plot::read_metrics(path.string(), "step", {"loss", "acc"});
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].y, (std::vector<double>{2.0, 1.5}));
  EXPECT_EQ(s[1].x, (std::vector<double>{2.0}));
  {
    std::ofstream f(path, std::ios::app);
    f << "{broken\n";
  }
  try {
    plot::read_metrics(path.string(), "step", {"loss"});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("beaver_metrics.jsonl:5: not valid JSON"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(plot::read_metrics("/nonexistent/m.jsonl", "step", {"loss"}), Error);
  fs::remove(path);
}

TEST(Plot, LinePanelsAndHistogramWriteFiles) {
  const auto a = fs::temp_directory_path() / "beaver_lines.png";
  const auto b = fs::temp_directory_path() / "beaver_hist.png";
  plot::line_panels(a.string(), "step",
                    {{"loss", {{"loss", {0, 1, 2}, {3, 2, 1}}}},
                     {"lambda", {{"lambda", {0, 1}, {1, 1}}}}});  // a flat series still plots
  plot::histogram(b.string(), "cost", "cost (CM end score)", {{"safe", {-3, -2, -2.5}}, {"unsafe", {1, 2, 2.2}}}, 10);
  EXPECT_GT(fs::file_size(a), 1000u);
  EXPECT_GT(fs::file_size(b), 1000u);
  EXPECT_THROW(plot::line_panels(a.string(), "step", {}), Error);
  fs::remove(a);
  fs::remove(b);
}


// The harm-versus-helpfulness plane: markers sit at the data's pixel, the cross bars span the
// intervals and stop at their ends, the axes cover every interval, and a point without an
// interval gets no bars.
TEST(Plot, PlanePointsAndCrossBarsLandWhereTheDataSays) {
  const std::vector<plot::PlanePoint> pts = {
      {"SFT", 1.0, 0.8, 1.2, 40.0, 30.0, 50.0},
      {"PPO-LAG", 1.5, 1.5, 1.5, 10.0, 10.0, 10.0},
  };
  plot::PlaneFrame f;
  const Image img = plot::plane("plane", "helpfulness", "harm %", pts, &f);
  // The axes are the rounded ticks of the intervals' span: x 0.8..1.5, y 10..50.
  EXPECT_EQ(f.x_lo, plot::tick_values(0.8, 1.5, false).front());
  EXPECT_EQ(f.x_hi, plot::tick_values(0.8, 1.5, false).back());
  EXPECT_EQ(f.y_lo, plot::tick_values(10, 50, false).front());
  EXPECT_EQ(f.y_hi, plot::tick_values(10, 50, false).back());
  // The data range fills the plot area, which lies inside the image: low harm at the bottom.
  EXPECT_GT(f.x1 - f.x0, 300);
  EXPECT_GT(f.y1 - f.y0, 300);
  EXPECT_LT(f.x1, img.width());
  EXPECT_LT(f.y1, img.height());
  EXPECT_DOUBLE_EQ(f.px(f.x_lo), f.x0);
  EXPECT_DOUBLE_EQ(f.px(f.x_hi), f.x1);
  EXPECT_DOUBLE_EQ(f.py(f.y_lo), f.y1);
  EXPECT_DOUBLE_EQ(f.py(f.y_hi), f.y0);
  const auto at = [&](double x, double y) {
    return img.get(int(std::lround(x)), int(std::lround(y)));
  };
  const auto same = [](Rgb a, Rgb b) { return a.r == b.r && a.g == b.g && a.b == b.b; };
  const Rgb c0 = plot::palette_color(0), c1 = plot::palette_color(1);
  // Markers at the points, in their own colours; higher harm is higher in the image.
  EXPECT_TRUE(same(at(f.px(1.0), f.py(40)), c0));
  EXPECT_TRUE(same(at(f.px(1.0) + 3, f.py(40) - 3), c0));
  EXPECT_TRUE(same(at(f.px(1.5), f.py(10)), c1));
  EXPECT_LT(f.py(40), f.py(10));
  // SFT's horizontal bar from x 0.8 to 1.2 at y 40, with caps at both ends, and nothing past them.
  for (double x = 0.81; x < 1.2; x += 0.01) EXPECT_TRUE(same(at(f.px(x), f.py(40)), c0)) << x;
  EXPECT_TRUE(same(at(f.px(0.8), f.py(40) - 3), c0));
  EXPECT_TRUE(same(at(f.px(1.2), f.py(40) + 3), c0));
  EXPECT_FALSE(same(at(f.px(1.2) + 4, f.py(40)), c0));
  EXPECT_FALSE(same(at(f.px(0.8) - 4, f.py(40)), c0));
  // Its vertical bar from y 30 to 50 at x 1.0.
  for (double y = 30.5; y < 50; y += 0.5) EXPECT_TRUE(same(at(f.px(1.0), f.py(y)), c0)) << y;
  EXPECT_TRUE(same(at(f.px(1.0) - 3, f.py(30)), c0));
  EXPECT_TRUE(same(at(f.px(1.0) + 3, f.py(50)), c0));
  EXPECT_FALSE(same(at(f.px(1.0), f.py(50) - 4), c0));
  EXPECT_FALSE(same(at(f.px(1.0), f.py(30) + 4), c0));
  // PPO-Lag has no interval: no bar leaves its marker.
  EXPECT_FALSE(same(at(f.px(1.5) - 6, f.py(10)), c1));
  EXPECT_FALSE(same(at(f.px(1.5), f.py(10) - 6), c1));
  // Each name is drawn in its point's colour near its marker (first place: right, above).
  int named = 0;
  for (int y = int(f.py(40)) - 12; y < int(f.py(40)); ++y)
    for (int x = int(f.px(1.0)) + 8; x < int(f.px(1.0)) + 8 + Image::text_width("SFT"); ++x)
      named += same(img.get(x, y), c0);
  EXPECT_GT(named, 10);
  test::TempDir tmp;
  img.write_png(tmp / "plane.png");
  EXPECT_GT(fs::file_size(tmp / "plane.png"), 1000u);
  EXPECT_THROW(plot::plane("p", "x", "y", {}), Error);
  EXPECT_THROW(plot::plane("p", "x", "y", {{"bad", 1, 2, 3, 0, 0, 0}}), Error);  // x below x_lo
  EXPECT_THROW(plot::plane("p", "x", "y", {{"nan", NAN, NAN, NAN, 0, 0, 0}}), Error);
}

}  // namespace
}  // namespace beaver
