// A small RGB raster with line, rectangle and text drawing, and a PNG writer (zlib's deflate
// for the image data, chunk CRC-32 computed here). Enough for training curves and
// histograms without Python; the files open in any image viewer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace beaver {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

class Image {
 public:
  Image(int width, int height, Rgb background = {255, 255, 255});
  int width() const { return w_; }
  int height() const { return h_; }
  void set(int x, int y, Rgb c);  // ignores pixels outside the image
  Rgb get(int x, int y) const;
  void line(double x0, double y0, double x1, double y1, Rgb c, int thickness = 1);
  void rect(int x0, int y0, int x1, int y1, Rgb c);  // filled, inclusive corners
  // 5×7 bitmap text (upper-cased; unknown characters drawn as '?'), scale ≥ 1.
  void text(int x, int y, std::string_view s, Rgb c, int scale = 1);
  static int text_width(std::string_view s, int scale = 1) { return int(s.size()) * 6 * scale; }
  // Writes an 8-bit RGB PNG; throws beaver::Error naming the path on failure.
  void write_png(const std::string& path) const;

 private:
  int w_, h_;
  std::vector<uint8_t> px_;
};

uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0);

}  // namespace beaver
