#include "csrc/dtype.h"

#include <string>

#include "csrc/error.h"

namespace beaver {

DType parse_dtype(std::string_view name) {
  std::string s(name);
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (s == "f32" || s == "float32" || s == "fp32") return DType::F32;
  if (s == "bf16" || s == "bfloat16") return DType::BF16;
  if (s == "f16" || s == "float16" || s == "fp16") return DType::F16;
  if (s == "i32" || s == "int32") return DType::I32;
  if (s == "i64" || s == "int64") return DType::I64;
  if (s == "u8" || s == "uint8") return DType::U8;
  BEAVER_FAIL("unknown dtype '", name, "' (expected f32, bf16, f16, i32, i64 or u8)");
}

f16 to_f16(float x) {
  const uint32_t u = f32_bits(x);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t absu = u & 0x7fffffffu;
  if (absu > 0x7f800000u) return f16{uint16_t(sign | 0x7e00u)};  // NaN
  if (absu >= 0x477ff000u) return f16{uint16_t(sign | 0x7c00u)};  // overflow (rounds to inf)
  if (absu < 0x38800000u) {                                       // subnormal or zero in f16
    if (absu < 0x33000000u) return f16{sign};                     // below half the smallest
    const uint32_t mant = (absu & 0x7fffffu) | 0x800000u;
    const int s = 126 - int(absu >> 23);  // value = mant * 2^-24 after shifting right by s
    uint32_t r = mant >> s;
    const uint32_t rem = mant & ((1u << s) - 1u);
    const uint32_t half = 1u << (s - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return f16{uint16_t(sign | r)};
  }
  uint32_t r = ((absu >> 13) - (112u << 10));  // rebias exponent 127 -> 15
  const uint32_t rem = absu & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return f16{uint16_t(sign | r)};
}

float to_f32(f16 h) {
  const uint32_t sign = uint32_t(h.bits & 0x8000u) << 16;
  const uint32_t exp = (h.bits >> 10) & 0x1fu;
  uint32_t mant = h.bits & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return bits_f32(sign);
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    return bits_f32(sign | (uint32_t(112 - e) << 23) | ((mant & 0x3ffu) << 13));
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
  return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

}  // namespace beaver
