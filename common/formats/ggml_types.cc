#include "common/formats/ggml_types.h"

#include "common/formats/iq_types.h"

#include <cmath>
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
    const uint8_t bit_lo = static_cast<uint8_t>(1u << (2 * chunk)),
                  bit_hi = static_cast<uint8_t>(2u << (2 * chunk));
    for (int l = 0; l < 32; ++l)
      y[l] = d_lo * ((qs[l] & 0x0F) + ((qh[l] & bit_lo) ? 16 : 0)) - min_lo;
    for (int l = 0; l < 32; ++l)
      y[32 + l] = d_hi * ((qs[l] >> 4) + ((qh[l] & bit_hi) ? 16 : 0)) - min_hi;
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

// Q2_K: 16 sub-blocks of 16; sub-block i has 4-bit scale and min in scales[i]. Element
// 128h + 32s + l is bits 2s..2s+1 of qs[32h + l]; x = d·scale·q − dmin·min.
void DequantizeQ2KBlock(const uint8_t* block, float* y) {
  const uint8_t* scales = block;
  const uint8_t* qs = block + 16;
  const float d = LoadHalf(block + 80), dmin = LoadHalf(block + 82);
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, s = (e / 32) % 4, l = e % 32, i = e / 16;
    const float dl = d * static_cast<float>(scales[i] & 0xF);
    const float ml = dmin * static_cast<float>(scales[i] >> 4);
    y[e] = dl * static_cast<float>((qs[32 * h + l] >> (2 * s)) & 3) - ml;
  }
}

// Q3_K: 16 six-bit scales (low nibbles in bytes 0..7, two high bits each in bytes 8..11), a
// 2-bit value per element as in Q2_K, and a high bit in hmask whose *absence* subtracts 4:
// x = d·(scale − 32)·(q − 4·!bit).
void DequantizeQ3KBlock(const uint8_t* block, float* y) {
  const uint8_t* hmask = block;
  const uint8_t* qs = block + 32;
  const uint8_t* sc = block + 96;
  const float d = LoadHalf(block + 108);
  float dl[16];
  for (int k = 0; k < 16; ++k) {
    const int low = (k < 8 ? sc[k] : sc[k - 8] >> 4) & 0x0F;
    const int high = (sc[8 + k % 4] >> (2 * (k / 4))) & 0x03;
    dl[k] = d * static_cast<float>(static_cast<int8_t>(low | (high << 4)) - 32);
  }
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, s = (e / 32) % 4, l = e % 32;
    const int q = (qs[32 * h + l] >> (2 * s)) & 3;
    const int bit = (hmask[l] >> (e / 32)) & 1;
    y[e] = dl[e / 16] * static_cast<float>(q - ((bit ^ 1) << 2));
  }
}

// The non-linear 4-bit grid of IQ4_NL and IQ4_XS.
constexpr int8_t kIq4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                   1,    13,   25,  38,  53,  69,  89,  113};

// IQ4_NL: f16 d, qs[16]; element 16j + l is nibble j of qs[l]; x = d·grid[nibble].
void DequantizeIq4NlBlock(const uint8_t* block, float* y) {
  const float d = LoadHalf(block);
  for (int e = 0; e < 32; ++e)
    y[e] = d * static_cast<float>(kIq4Values[(block[2 + e % 16] >> (4 * (e / 16))) & 0xF]);
}

// IQ4_XS: f16 d, u16 scales_h, u8 scales_l[4], qs[128]: 8 sub-blocks of 32 with six-bit scales
// (low nibble k of scales_l, bits 2k..2k+1 of scales_h), each laid out as one IQ4_NL block.
void DequantizeIq4XsBlock(const uint8_t* block, float* y) {
  const float d = LoadHalf(block);
  const uint16_t scales_h = static_cast<uint16_t>(block[2] | (block[3] << 8));
  const uint8_t* scales_l = block + 4;
  const uint8_t* qs = block + 8;
  for (int k = 0; k < 8; ++k) {
    const int low = (scales_l[k / 2] >> (4 * (k % 2))) & 0x0F;
    const int high = (scales_h >> (2 * k)) & 0x03;
    const float dl = d * static_cast<float>(static_cast<int8_t>(low | (high << 4)) - 32);
    for (int m = 0; m < 32; ++m) {
      y[32 * k + m] =
          dl * static_cast<float>(kIq4Values[(qs[16 * k + m % 16] >> (4 * (m / 16))) & 0xF]);
    }
  }
}

// MXFP4 (OCP microscaling): u8 e8m0 exponent, qs[16] of e2m1 nibbles (element 16j + l is nibble
// j of qs[l]). ggml keeps the e2m1 values doubled and the scale halved: x = 2^(e−128)·(2·e2m1).
void DequantizeMxfp4Block(const uint8_t* block, float* y) {
  static constexpr int8_t kE2m1Doubled[16] = {0, 1,  2,  3,  4,  6,  8,  12,
                                              0, -1, -2, -3, -4, -6, -8, -12};
  const uint32_t e = block[0];
  const uint32_t bits = e < 2 ? (0x00200000u << e) : ((e - 1) << 23);
  float d;
  std::memcpy(&d, &bits, sizeof(d));
  for (int m = 0; m < 32; ++m)
    y[m] = d * static_cast<float>(kE2m1Doubled[(block[1 + m % 16] >> (4 * (m / 16))) & 0xF]);
}

// NVFP4: four sub-blocks of 16, each with an unsigned E4M3 scale (bias 7; 0 and 0x7F mean 0)
// halved as MXFP4's is, and e2m1 values: element 16s + j is the low nibble of qs[8s + j] for
// j < 8, the high nibble of qs[8s + j − 8] after.
void DequantizeNvfp4Block(const uint8_t* block, float* y) {
  static constexpr int8_t kE2m1Doubled[16] = {0, 1,  2,  3,  4,  6,  8,  12,
                                              0, -1, -2, -3, -4, -6, -8, -12};
  for (int s = 0; s < 4; ++s) {
    const uint8_t x = block[s];
    const int exponent = (x >> 3) & 0xF;
    const float mantissa = static_cast<float>(x & 0x7);
    float d = exponent == 0 ? mantissa * 0x1p-9f
                            : (1.0f + mantissa / 8.0f) * std::ldexp(1.0f, exponent - 7);
    d = (x == 0 || x == 0x7F) ? 0.0f : d * 0.5f;
    const uint8_t* qs = block + 4 + 8 * s;
    for (int j = 0; j < 16; ++j) {
      const int nibble = j < 8 ? (qs[j] & 0xF) : (qs[j - 8] >> 4);
      y[16 * s + j] = d * static_cast<float>(kE2m1Doubled[nibble]);
    }
  }
}

// TQ2_0 (ternary, 2 bits each): element 128c + 32s + l is bits 2s..2s+1 of qs[32c + l].
void DequantizeTq2_0Block(const uint8_t* block, float* y) {
  const float d = LoadHalf(block + 64);
  for (int c = 0; c < 2; ++c) {
    for (int s = 0; s < 4; ++s) {
      for (int l = 0; l < 32; ++l) {
        y[128 * c + 32 * s + l] =
            d * static_cast<float>(static_cast<int>((block[32 * c + l] >> (2 * s)) & 3) - 1);
      }
    }
  }
}

// TQ1_0 (ternary, 1.6 bits each): a byte b holds base-3 digits as a fixed-point fraction, digit k
// being the top "trit" of (b·3^k mod 256), i.e. ((b·3^k mod 256)·3) >> 8. Elements 0-159 come
// from qs[0..31] (digit k of byte l is element 32k + l), 160-239 from qs[32..47] (160 + 16k + l),
// 240-255 from qh[0..3] (240 + 4k + l, four digits each).
void DequantizeTq1_0Block(const uint8_t* block, float* y) {
  const uint8_t* qs = block;
  const uint8_t* qh = block + 48;
  const float d = LoadHalf(block + 52);
  auto trit = [](uint8_t b, int k) {
    static constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
    const uint8_t shifted = static_cast<uint8_t>(b * kPow3[k]);  // mod 256
    return static_cast<int>((static_cast<uint16_t>(shifted) * 3) >> 8) - 1;
  };
  for (int k = 0; k < 5; ++k) {
    for (int l = 0; l < 32; ++l) y[32 * k + l] = d * static_cast<float>(trit(qs[l], k));
    for (int l = 0; l < 16; ++l) y[160 + 16 * k + l] = d * static_cast<float>(trit(qs[32 + l], k));
  }
  for (int k = 0; k < 4; ++k) {
    for (int l = 0; l < 4; ++l) y[240 + 4 * k + l] = d * static_cast<float>(trit(qh[l], k));
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

namespace {

void DequantizeQ4_0(const uint8_t* p, float* y) { DequantizeQ4_0Block(p + 2, LoadHalf(p), y); }
void DequantizeQ4_1(const uint8_t* p, float* y) {
  DequantizeQ4_1Block(p + 4, LoadHalf(p), LoadHalf(p + 2), y);
}
void DequantizeQ5_0(const uint8_t* p, float* y) { DequantizeQ5Block(p, /*affine=*/false, y); }
void DequantizeQ5_1(const uint8_t* p, float* y) { DequantizeQ5Block(p, /*affine=*/true, y); }
void DequantizeQ8_0(const uint8_t* p, float* y) {
  const float d = LoadHalf(p);
  const auto* qs = reinterpret_cast<const int8_t*>(p + 2);
  for (int j = 0; j < 32; ++j) y[j] = qs[j] * d;
}

// Every type schism reads: its geometry and how one block becomes floats (the float types
// are converted element-wise in DequantizeToFloat and have no block function).
struct TypeEntry {
  GgmlType type;
  GgmlTypeInfo info;
  void (*block)(const uint8_t*, float*);
};
constexpr TypeEntry kTypes[] = {
    {GgmlType::kF32, {"F32", 1, 4}, nullptr},
    {GgmlType::kF16, {"F16", 1, 2}, nullptr},
    {GgmlType::kBF16, {"BF16", 1, 2}, nullptr},
    {GgmlType::kQ4_0, {"Q4_0", 32, 18}, DequantizeQ4_0},
    {GgmlType::kQ4_1, {"Q4_1", 32, 20}, DequantizeQ4_1},
    {GgmlType::kQ5_0, {"Q5_0", 32, 22}, DequantizeQ5_0},
    {GgmlType::kQ5_1, {"Q5_1", 32, 24}, DequantizeQ5_1},
    {GgmlType::kQ8_0, {"Q8_0", 32, 34}, DequantizeQ8_0},
    {GgmlType::kQ2_K, {"Q2_K", 256, 84}, DequantizeQ2KBlock},
    {GgmlType::kQ3_K, {"Q3_K", 256, 110}, DequantizeQ3KBlock},
    {GgmlType::kQ4_K, {"Q4_K", 256, 144}, DequantizeQ4KBlock},
    {GgmlType::kQ5_K, {"Q5_K", 256, 176}, DequantizeQ5KBlock},
    {GgmlType::kQ6_K, {"Q6_K", 256, 210}, DequantizeQ6KBlock},
    {GgmlType::kIQ1_S, {"IQ1_S", 256, 50}, DequantizeIq1SBlock},
    {GgmlType::kIQ1_M, {"IQ1_M", 256, 56}, DequantizeIq1MBlock},
    {GgmlType::kIQ2_XXS, {"IQ2_XXS", 256, 66}, DequantizeIq2XxsBlock},
    {GgmlType::kIQ2_XS, {"IQ2_XS", 256, 74}, DequantizeIq2XsBlock},
    {GgmlType::kIQ2_S, {"IQ2_S", 256, 82}, DequantizeIq2SBlock},
    {GgmlType::kIQ3_XXS, {"IQ3_XXS", 256, 98}, DequantizeIq3XxsBlock},
    {GgmlType::kIQ3_S, {"IQ3_S", 256, 110}, DequantizeIq3SBlock},
    {GgmlType::kIQ4_NL, {"IQ4_NL", 32, 18}, DequantizeIq4NlBlock},
    {GgmlType::kIQ4_XS, {"IQ4_XS", 256, 136}, DequantizeIq4XsBlock},
    {GgmlType::kMXFP4, {"MXFP4", 32, 17}, DequantizeMxfp4Block},
    {GgmlType::kNVFP4, {"NVFP4", 64, 36}, DequantizeNvfp4Block},
    {GgmlType::kTQ1_0, {"TQ1_0", 256, 54}, DequantizeTq1_0Block},
    {GgmlType::kTQ2_0, {"TQ2_0", 256, 66}, DequantizeTq2_0Block},
};

const TypeEntry* FindType(uint32_t type_id) {
  for (const TypeEntry& e : kTypes) {
    if (static_cast<uint32_t>(e.type) == type_id) return &e;
  }
  return nullptr;
}

}  // namespace

std::optional<GgmlTypeInfo> LookupGgmlType(uint32_t type_id) {
  if (const TypeEntry* e = FindType(type_id)) return e->info;
  return std::nullopt;
}

std::string GgmlTypeName(uint32_t type_id) {
  if (auto info = LookupGgmlType(type_id)) return info->name;
  // ggml's other ids (ggml.h's enum ggml_type), named so that errors say what a file holds.
  static constexpr std::pair<uint32_t, const char*> kOthers[] = {
      {15, "Q8_K"},  {16, "IQ2_XXS"}, {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"},
      {21, "IQ3_S"}, {22, "IQ2_S"},   {24, "I8"},     {25, "I16"},     {26, "I32"},
      {27, "I64"},   {28, "F64"},     {29, "IQ1_M"},  {40, "NVFP4"}};
  for (const auto& [id, name] : kOthers) {
    if (id == type_id) return name;
  }
  return absl::StrCat("type ", type_id);
}

absl::Status DequantizeToFloat(GgmlType type, const void* src, size_t n_elements, float* dst) {
  const TypeEntry* entry = FindType(static_cast<uint32_t>(type));
  if (entry == nullptr) {
    return absl::UnimplementedError(
        absl::StrCat("cannot dequantize ", GgmlTypeName(static_cast<uint32_t>(type))));
  }
  const GgmlTypeInfo& info = entry->info;
  if (n_elements % info.block_elements != 0) {
    return absl::InvalidArgumentError(absl::StrCat(n_elements, " elements is not a multiple of ",
                                                   info.name, "'s block of ", info.block_elements));
  }
  const auto* p = static_cast<const uint8_t*>(src);
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, p, n_elements * sizeof(float));
      return absl::OkStatus();
    case GgmlType::kF16:
      for (size_t i = 0; i < n_elements; ++i) dst[i] = LoadHalf(p + 2 * i);
      return absl::OkStatus();
    case GgmlType::kBF16:
      for (size_t i = 0; i < n_elements; ++i) dst[i] = Bf16ToFloat(LoadU16(p + 2 * i));
      return absl::OkStatus();
    default:
      break;
  }
  const size_t blocks = n_elements / info.block_elements;
  for (size_t b = 0; b < blocks; ++b, p += info.block_bytes, dst += info.block_elements)
    entry->block(p, dst);
  return absl::OkStatus();
}

}  // namespace schism::formats
