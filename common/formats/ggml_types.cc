#include "common/formats/ggml_types.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace schism::formats {
namespace {

uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
float LoadHalf(const uint8_t* p) { return HalfToFloat(LoadU16(p)); }

// Q4_0 / Q4_1 share the nibble layout: byte j holds element j (low) and j + 16 (high).
// Q4_0 is symmetric ((q - 8) * d); Q4_1 is affine (q * d + m).
void DequantizeQ4_0Block(const uint8_t* qs, float d, float* y) {
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
    y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

void DequantizeQ4_1Block(const uint8_t* qs, float d, float m, float* y) {
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
    y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

// Q5_0 / Q5_1: Q4's nibble layout plus a fifth bit per element in the 32-bit qh (bit j for
// element j). Q5_0 is symmetric ((q - 16) * d); Q5_1 is affine (q * d + m).
void DequantizeQ5Block(const uint8_t* block, bool affine, float* y) {
  const float d = LoadHalf(block);
  const float m = affine ? LoadHalf(block + 2) : 0.0f;
  const uint8_t* qhp = block + (affine ? 4 : 2);
  const uint32_t qh = static_cast<uint32_t>(qhp[0]) | static_cast<uint32_t>(qhp[1]) << 8 |
                      static_cast<uint32_t>(qhp[2]) << 16 | static_cast<uint32_t>(qhp[3]) << 24;
  const uint8_t* qs = qhp + 4;
  for (int j = 0; j < 16; ++j) {
    const int lo = (qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
    const int hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    if (affine) {
      y[j] = static_cast<float>(lo) * d + m;
      y[j + 16] = static_cast<float>(hi) * d + m;
    } else {
      y[j] = static_cast<float>(lo - 16) * d;
      y[j + 16] = static_cast<float>(hi - 16) * d;
    }
  }
}

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K block.
void Q4KScaleMin(int j, const uint8_t* s, int* scale, int* min) {
  if (j < 4) {
    *scale = s[j] & 63;
    *min = s[j + 4] & 63;
  } else {
    *scale = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    *min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

void DequantizeQ4KBlock(const uint8_t* block, float* y) {
  const float d = LoadHalf(block);
  const float dmin = LoadHalf(block + 2);
  const uint8_t* scales = block + 4;
  const uint8_t* qs = block + 16;
  for (int chunk = 0; chunk < 4; ++chunk) {  // 64 elements per chunk: two 32-element sub-blocks
    int sc_lo, m_lo, sc_hi, m_hi;
    Q4KScaleMin(2 * chunk, scales, &sc_lo, &m_lo);
    Q4KScaleMin(2 * chunk + 1, scales, &sc_hi, &m_hi);
    const float d_lo = d * sc_lo, min_lo = dmin * m_lo;
    const float d_hi = d * sc_hi, min_hi = dmin * m_hi;
    for (int l = 0; l < 32; ++l) y[l] = d_lo * (qs[l] & 0x0F) - min_lo;
    for (int l = 0; l < 32; ++l) y[32 + l] = d_hi * (qs[l] >> 4) - min_hi;
    qs += 32;
    y += 64;
  }
}

// Q5_K: Q4_K's scales, plus qh[32] whose bit 2c (low nibbles) and 2c+1 (high nibbles) of byte l
// is the fifth bit of element l of chunk c's two sub-blocks.
void DequantizeQ5KBlock(const uint8_t* block, float* y) {
  const float d = LoadHalf(block);
  const float dmin = LoadHalf(block + 2);
  const uint8_t* scales = block + 4;
  const uint8_t* qh = block + 16;
  const uint8_t* qs = block + 48;
  for (int chunk = 0; chunk < 4; ++chunk) {
    int sc_lo, m_lo, sc_hi, m_hi;
    Q4KScaleMin(2 * chunk, scales, &sc_lo, &m_lo);
    Q4KScaleMin(2 * chunk + 1, scales, &sc_hi, &m_hi);
    const float d_lo = d * sc_lo, min_lo = dmin * m_lo;
    const float d_hi = d * sc_hi, min_hi = dmin * m_hi;
    const uint8_t bit_lo = static_cast<uint8_t>(1u << (2 * chunk)), bit_hi = static_cast<uint8_t>(2u << (2 * chunk));
    for (int l = 0; l < 32; ++l) y[l] = d_lo * ((qs[l] & 0x0F) + ((qh[l] & bit_lo) ? 16 : 0)) - min_lo;
    for (int l = 0; l < 32; ++l) y[32 + l] = d_hi * ((qs[l] >> 4) + ((qh[l] & bit_hi) ? 16 : 0)) - min_hi;
    qs += 32;
    y += 64;
  }
}

void DequantizeQ6KBlock(const uint8_t* block, float* y) {
  const uint8_t* ql = block;
  const uint8_t* qh = block + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(block + 192);
  const float d = LoadHalf(block + 208);
  for (int half = 0; half < 2; ++half) {  // 128 elements per half
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

}  // namespace

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1F;
  uint32_t mantissa = h & 0x3FF;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        ++e;
        mantissa <<= 1;
      } while ((mantissa & 0x400) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mantissa & 0x3FF) << 13;
    }
  } else if (exponent == 31) {
    bits = sign | 0x7F800000u | mantissa << 13;
  } else {
    bits = sign | (exponent + 127 - 15) << 23 | mantissa << 13;
  }
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

float Bf16ToFloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

std::optional<GgmlTypeInfo> LookupGgmlType(uint32_t type_id) {
  switch (static_cast<GgmlType>(type_id)) {
    case GgmlType::kF32: return GgmlTypeInfo{"F32", 1, 4};
    case GgmlType::kF16: return GgmlTypeInfo{"F16", 1, 2};
    case GgmlType::kBF16: return GgmlTypeInfo{"BF16", 1, 2};
    case GgmlType::kQ4_0: return GgmlTypeInfo{"Q4_0", 32, 18};
    case GgmlType::kQ4_1: return GgmlTypeInfo{"Q4_1", 32, 20};
    case GgmlType::kQ5_0: return GgmlTypeInfo{"Q5_0", 32, 22};
    case GgmlType::kQ5_1: return GgmlTypeInfo{"Q5_1", 32, 24};
    case GgmlType::kQ8_0: return GgmlTypeInfo{"Q8_0", 32, 34};
    case GgmlType::kQ4_K: return GgmlTypeInfo{"Q4_K", 256, 144};
    case GgmlType::kQ5_K: return GgmlTypeInfo{"Q5_K", 256, 176};
    case GgmlType::kQ6_K: return GgmlTypeInfo{"Q6_K", 256, 210};
  }
  return std::nullopt;
}

std::string GgmlTypeName(uint32_t type_id) {
  if (auto info = LookupGgmlType(type_id)) return info->name;
  // ggml's other ids (ggml.h's enum ggml_type), named so that errors say what a file holds.
  static constexpr std::pair<uint32_t, const char*> kOthers[] = {
      {10, "Q2_K"},    {11, "Q3_K"},    {15, "Q8_K"},   {16, "IQ2_XXS"}, {17, "IQ2_XS"},
      {18, "IQ3_XXS"}, {19, "IQ1_S"},   {20, "IQ4_NL"}, {21, "IQ3_S"},   {22, "IQ2_S"},
      {23, "IQ4_XS"},  {24, "I8"},      {25, "I16"},    {26, "I32"},     {27, "I64"},
      {28, "F64"},     {29, "IQ1_M"},   {34, "TQ1_0"},  {35, "TQ2_0"},   {39, "MXFP4"}};
  for (const auto& [id, name] : kOthers) {
    if (id == type_id) return name;
  }
  return absl::StrCat("type ", type_id);
}

absl::Status DequantizeToFloat(GgmlType type, const void* src, size_t n_elements, float* dst) {
  auto info = LookupGgmlType(static_cast<uint32_t>(type));
  if (!info) {
    return absl::UnimplementedError(
        absl::StrCat("cannot dequantize ", GgmlTypeName(static_cast<uint32_t>(type))));
  }
  if (n_elements % info->block_elements != 0) {
    return absl::InvalidArgumentError(absl::StrCat(n_elements, " elements is not a multiple of ",
                                                   info->name, "'s block of ",
                                                   info->block_elements));
  }
  const auto* p = static_cast<const uint8_t*>(src);
  const size_t blocks = n_elements / info->block_elements;
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, p, n_elements * sizeof(float));
      break;
    case GgmlType::kF16:
      for (size_t i = 0; i < n_elements; ++i) dst[i] = LoadHalf(p + 2 * i);
      break;
    case GgmlType::kBF16:
      for (size_t i = 0; i < n_elements; ++i) dst[i] = Bf16ToFloat(LoadU16(p + 2 * i));
      break;
    case GgmlType::kQ4_0:
      for (size_t b = 0; b < blocks; ++b, p += 18, dst += 32) DequantizeQ4_0Block(p + 2, LoadHalf(p), dst);
      break;
    case GgmlType::kQ4_1:
      for (size_t b = 0; b < blocks; ++b, p += 20, dst += 32) {
        DequantizeQ4_1Block(p + 4, LoadHalf(p), LoadHalf(p + 2), dst);
      }
      break;
    case GgmlType::kQ5_0:
      for (size_t b = 0; b < blocks; ++b, p += 22, dst += 32) DequantizeQ5Block(p, /*affine=*/false, dst);
      break;
    case GgmlType::kQ5_1:
      for (size_t b = 0; b < blocks; ++b, p += 24, dst += 32) DequantizeQ5Block(p, /*affine=*/true, dst);
      break;
    case GgmlType::kQ5_K:
      for (size_t b = 0; b < blocks; ++b, p += 176, dst += 256) DequantizeQ5KBlock(p, dst);
      break;
    case GgmlType::kQ8_0:
      for (size_t b = 0; b < blocks; ++b, p += 34, dst += 32) {
        const float d = LoadHalf(p);
        const auto* qs = reinterpret_cast<const int8_t*>(p + 2);
        for (int j = 0; j < 32; ++j) dst[j] = qs[j] * d;
      }
      break;
    case GgmlType::kQ4_K:
      for (size_t b = 0; b < blocks; ++b, p += 144, dst += 256) DequantizeQ4KBlock(p, dst);
      break;
    case GgmlType::kQ6_K:
      for (size_t b = 0; b < blocks; ++b, p += 210, dst += 256) DequantizeQ6KBlock(p, dst);
      break;
  }
  return absl::OkStatus();
}

}  // namespace schism::formats
