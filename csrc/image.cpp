#include "csrc/image.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <fstream>
#include <zlib.h>

#include "csrc/error.h"

namespace beaver {

namespace {

// 5×7 glyphs, one byte per row, bit 4 = leftmost column.
struct Glyph {
  char c;
  std::array<uint8_t, 7> rows;
};
constexpr Glyph kFont[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}}, {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}}, {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}}, {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}}, {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}}, {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}}, {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}}, {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}}, {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}}, {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}}, {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}}, {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {' ', {0, 0, 0, 0, 0, 0, 0}},                      {'.', {0, 0, 0, 0, 0, 0x0C, 0x0C}},
    {',', {0, 0, 0, 0, 0x0C, 0x04, 0x08}},             {'-', {0, 0, 0, 0x1F, 0, 0, 0}},
    {'+', {0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0}},       {'_', {0, 0, 0, 0, 0, 0, 0x1F}},
    {':', {0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0}},          {'/', {0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}}, {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}}, {'=', {0, 0, 0x1F, 0, 0x1F, 0, 0}},
    {'<', {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}}, {'>', {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}},
    {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}}, {'|', {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
};

const Glyph& glyph(char c) {
  const char u = char(std::toupper(static_cast<unsigned char>(c)));
  for (const auto& g : kFont)
    if (g.c == u) return g;
  for (const auto& g : kFont)
    if (g.c == '?') return g;
  return kFont[0];
}

void put_u32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back(uint8_t(x >> s));
}

void chunk(std::vector<uint8_t>& png, const char* type, const std::vector<uint8_t>& data) {
  put_u32(png, uint32_t(data.size()));
  const size_t start = png.size();
  png.insert(png.end(), type, type + 4);
  png.insert(png.end(), data.begin(), data.end());
  put_u32(png, crc32(png.data() + start, png.size() - start));
}

}  // namespace

uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc) {
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) {
    crc ^= data[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

Image::Image(int width, int height, Rgb background) : w_(width), h_(height) {
  BEAVER_CHECK(width > 0 && height > 0 && width <= 16384 && height <= 16384, "image size ",
               width, "x", height, " out of range");
  px_.resize(size_t(w_) * size_t(h_) * 3);
  for (size_t i = 0; i < px_.size(); i += 3) {
    px_[i] = background.r;
    px_[i + 1] = background.g;
    px_[i + 2] = background.b;
  }
}

void Image::set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
  uint8_t* p = &px_[(size_t(y) * size_t(w_) + size_t(x)) * 3];
  p[0] = c.r;
  p[1] = c.g;
  p[2] = c.b;
}

Rgb Image::get(int x, int y) const {
  if (x < 0 || y < 0 || x >= w_ || y >= h_) return {};
  const uint8_t* p = &px_[(size_t(y) * size_t(w_) + size_t(x)) * 3];
  return {p[0], p[1], p[2]};
}

void Image::line(double x0, double y0, double x1, double y1, Rgb c, int thickness) {
  if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1))
    return;
  // Clip the segment to the image plus the pen's width first (Liang-Barsky), so that extreme
  // data (a point at 1e10 pixels) draws the visible part and no coordinate outgrows an int.
  const double m = double(thickness) + 1;
  const double xmin = -m, ymin = -m, xmax = double(w_) + m, ymax = double(h_) + m;
  double dx = x1 - x0, dy = y1 - y0, t0 = 0, t1 = 1;
  const double p[4] = {-dx, dx, -dy, dy}, q[4] = {x0 - xmin, xmax - x0, y0 - ymin, ymax - y0};
  for (int k = 0; k < 4; ++k) {
    if (p[k] == 0) {
      if (q[k] < 0) return;  // parallel to this edge and outside it
      continue;
    }
    const double r = q[k] / p[k];
    if (p[k] < 0) t0 = std::max(t0, r);
    else t1 = std::min(t1, r);
    if (t0 > t1) return;
  }
  const double cx0 = x0 + t0 * dx, cy0 = y0 + t0 * dy;
  dx *= (t1 - t0);
  dy *= (t1 - t0);
  const int steps = std::max(1, int(std::ceil(std::max(std::fabs(dx), std::fabs(dy)))));
  const int lo = -(thickness - 1) / 2, hi = thickness / 2;
  for (int i = 0; i <= steps; ++i) {
    const double t = double(i) / steps;
    const int x = int(std::lround(cx0 + t * dx)), y = int(std::lround(cy0 + t * dy));
    for (int a = lo; a <= hi; ++a)
      for (int b = lo; b <= hi; ++b) set(x + a, y + b, c);
  }
}

void Image::rect(int x0, int y0, int x1, int y1, Rgb c) {
  for (int y = std::max(0, std::min(y0, y1)); y <= std::min(h_ - 1, std::max(y0, y1)); ++y)
    for (int x = std::max(0, std::min(x0, x1)); x <= std::min(w_ - 1, std::max(x0, x1)); ++x)
      set(x, y, c);
}

void Image::text(int x, int y, std::string_view s, Rgb c, int scale) {
  for (size_t i = 0; i < s.size(); ++i) {
    const Glyph& g = glyph(s[i]);
    for (int row = 0; row < 7; ++row)
      for (int col = 0; col < 5; ++col)
        if (g.rows[size_t(row)] & (0x10 >> col))
          rect(x + int(i) * 6 * scale + col * scale, y + row * scale,
               x + int(i) * 6 * scale + col * scale + scale - 1, y + row * scale + scale - 1, c);
  }
}

void Image::write_png(const std::string& path) const {
  // Raw scanlines, each prefixed with filter type 0.
  std::vector<uint8_t> raw;
  raw.reserve(size_t(h_) * (size_t(w_) * 3 + 1));
  for (int y = 0; y < h_; ++y) {
    raw.push_back(0);
    raw.insert(raw.end(), px_.begin() + ptrdiff_t(size_t(y) * size_t(w_) * 3),
               px_.begin() + ptrdiff_t(size_t(y + 1) * size_t(w_) * 3));
  }
  // One zlib stream (RFC 1950) at the best compression: plots are mostly flat colour, so
  // this is tens of kilobytes where the raw scanlines are megabytes.
  uLongf zbytes = compressBound(uLong(raw.size()));
  std::vector<uint8_t> z(zbytes);
  const int rc = compress2(z.data(), &zbytes, raw.data(), uLong(raw.size()), Z_BEST_COMPRESSION);
  if (rc != Z_OK) BEAVER_FAIL(path, ": zlib compress2 failed (code ", rc, ")");
  z.resize(zbytes);
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::vector<uint8_t> ihdr;
  put_u32(ihdr, uint32_t(w_));
  put_u32(ihdr, uint32_t(h_));
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit, truecolour, deflate, no filter, no interlace
  chunk(png, "IHDR", ihdr);
  chunk(png, "IDAT", z);
  chunk(png, "IEND", {});
  std::ofstream f(path, std::ios::binary);
  if (!f) BEAVER_IO_FAIL(path, "cannot open for writing");
  f.write(reinterpret_cast<const char*>(png.data()), std::streamsize(png.size()));
  if (!f) BEAVER_IO_FAIL(path, "write failed");
}

}  // namespace beaver
