// PNG writer and plots: the file is a valid PNG (signature, chunk CRCs, zlib stream), lines land
// where the data says, and metrics files are read with errors that name file and line.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "csrc/error.h"
#include "csrc/image.h"
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

TEST(Image, PngChunksAndStoredDeflateAreValid) {
  // Large enough for several stored deflate blocks (> 65535 bytes of scanlines).
  Image img(300, 100, {10, 20, 30});
  img.set(5, 7, {255, 0, 0});
  const auto path = fs::temp_directory_path() / "beaver_test.png";
  img.write_png(path.string());
  const auto d = slurp(path);
  ASSERT_GT(d.size(), 8u + 25u);
  const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  EXPECT_EQ(std::memcmp(d.data(), sig, 8), 0);
  size_t off = 8;
  std::vector<uint8_t> idat;
  std::vector<std::string> types;
  while (off + 12 <= d.size()) {
    const uint32_t len = be32(&d[off]);
    const std::string type(reinterpret_cast<const char*>(&d[off + 4]), 4);
    types.push_back(type);
    ASSERT_LE(off + 12 + len, d.size());
    EXPECT_EQ(crc32(&d[off + 4], len + 4), be32(&d[off + 8 + len])) << type;
    if (type == "IHDR") {
      EXPECT_EQ(be32(&d[off + 8]), 300u);
      EXPECT_EQ(be32(&d[off + 12]), 100u);
    }
    if (type == "IDAT") idat.insert(idat.end(), &d[off + 8], &d[off + 8 + len]);
    off += 12 + len;
  }
  EXPECT_EQ(off, d.size());
  EXPECT_EQ(types, (std::vector<std::string>{"IHDR", "IDAT", "IEND"}));
  // Inflate the stored blocks by hand and check a pixel.
  ASSERT_EQ(idat[0], 0x78);
  std::vector<uint8_t> raw;
  size_t p = 2;
  bool last = false;
  while (!last) {
    last = idat[p] & 1;
    EXPECT_EQ(idat[p] >> 1, 0);  // stored block
    const uint16_t n = uint16_t(idat[p + 1] | idat[p + 2] << 8);
    const uint16_t nn = uint16_t(idat[p + 3] | idat[p + 4] << 8);
    EXPECT_EQ(uint16_t(~n), nn);
    raw.insert(raw.end(), &idat[p + 5], &idat[p + 5 + n]);
    p += 5 + n;
  }
  ASSERT_EQ(raw.size(), size_t(100) * (300 * 3 + 1));
  const size_t px = size_t(7) * (300 * 3 + 1) + 1 + 5 * 3;
  EXPECT_EQ(raw[px], 255);
  EXPECT_EQ(raw[px + 1], 0);
  EXPECT_EQ(raw[1], 10);
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
  plot::histogram(b.string(), "cost", {{"safe", {-3, -2, -2.5}}, {"unsafe", {1, 2, 2.2}}}, 10);
  EXPECT_GT(fs::file_size(a), 1000u);
  EXPECT_GT(fs::file_size(b), 1000u);
  EXPECT_THROW(plot::line_panels(a.string(), "step", {}), Error);
  fs::remove(a);
  fs::remove(b);
}

}  // namespace
}  // namespace beaver
