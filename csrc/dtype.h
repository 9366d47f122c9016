// Element types and host-side conversions between fp32 and the 16-bit formats.
// bf16: the top 16 bits of an fp32, rounded to nearest-even (NaN stays NaN).
// f16: IEEE 754 binary16 with subnormals, rounded to nearest-even.
// Device code uses CUDA's own __nv_bfloat16/__half; the bit patterns are identical, so a
// tensor written on one side reads the same on the other.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace beaver {

enum class DType : uint8_t { F32, BF16, F16, I32, I64, U8 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::U8: return 1;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::U8: return "u8";
  }
  return "?";
}

constexpr bool is_float(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

// Parses "f32", "bf16", "f16", "i32", "i64", "u8" (also the safetensors spellings F32, BF16,
// ...); throws beaver::Error naming the unknown spelling.
DType parse_dtype(std::string_view name);

// ---- 16-bit storage types (plain bit containers on the host) --------------------------------
struct bf16 {
  uint16_t bits;
};
struct f16 {
  uint16_t bits;
};

inline uint32_t f32_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float bits_f32(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

inline bf16 to_bf16(float x) {
  uint32_t u = f32_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40u)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return bf16{uint16_t(u >> 16)};
}
inline float to_f32(bf16 h) { return bits_f32(uint32_t(h.bits) << 16); }

f16 to_f16(float x);
float to_f32(f16 h);

}  // namespace beaver
