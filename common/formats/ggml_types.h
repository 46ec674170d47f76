// GGML tensor element types as stored in GGUF files, their block geometry, and dequantization to
// float32. One place for every quantization format schism reads
// (docs/architecture.md#model-formats).
#ifndef SCHISM_COMMON_FORMATS_GGML_TYPES_H_
#define SCHISM_COMMON_FORMATS_GGML_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"

namespace schism::formats {

// Values are the on-disk type ids of the GGUF specification.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
  kNVFP4 = 40,
};

// Elements per block and bytes per block of a type. Block layouts (all little-endian):
//   F32/F16/BF16  1 element per "block"
//   Q4_0  32: f16 d, u8 qs[16]                 x = (nibble - 8) * d
//   Q4_1  32: f16 d, f16 m, u8 qs[16]          x = nibble * d + m
//   Q5_0  32: f16 d, u32 qh, u8 qs[16]         x = (nibble | bit j of qh << 4) - 16) * d
//   Q5_1  32: f16 d, f16 m, u32 qh, u8 qs[16]  x = (nibble | bit j of qh << 4) * d + m
//   Q8_0  32: f16 d, i8 qs[32]                 x = q * d
//   Q4_K 256: f16 d, f16 dmin, u8 scales[12] (8 packed 6-bit scale/min pairs), u8 qs[128]
//   Q5_K 256: as Q4_K plus u8 qh[32] (the fifth bits) before qs
//   Q6_K 256: u8 ql[128], u8 qh[64], i8 scales[16], f16 d
//   Q2_K 256: u8 scales[16] (4-bit scale | 4-bit min), u8 qs[64] (2-bit), f16 d, f16 dmin
//   Q3_K 256: u8 hmask[32], u8 qs[64] (2-bit), u8 scales[12] (16 six-bit), f16 d
//   IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S 256: codebooks (common/formats/iq_types.h)
//   IQ4_NL 32: f16 d, u8 qs[16] (4-bit indices into a fixed non-linear grid)
//   IQ4_XS 256: f16 d, u16 scales_h, u8 scales_l[4], u8 qs[128] (8 IQ4_NL-like sub-blocks)
//   MXFP4 32: u8 e8m0 scale, u8 qs[16] (e2m1 values)
//   TQ1_0 256: u8 qs[48] (5 base-3 digits per byte), u8 qh[4] (4 per byte), f16 d; x = (t−1)·d
//   NVFP4 64: u8 ue4m3 scales[4] (one per 16 elements), u8 qs[32] (e2m1 nibbles)
//   TQ2_0 256: u8 qs[64] (4 two-bit values per byte), f16 d; x = (q−1)·d
// In the 32-element formats byte j of qs holds element j (low nibble) and element j+16 (high).
struct GgmlTypeInfo {
  const char* name;
  size_t block_elements;
  size_t block_bytes;
};

// Geometry of a supported type, or nullopt for an id schism cannot dequantize.
std::optional<GgmlTypeInfo> LookupGgmlType(uint32_t type_id);

// The name of any type id ggml defines ("Q4_K", "IQ2_XS", ...), supported or not, or "type N".
std::string GgmlTypeName(uint32_t type_id);

// Dequantizes `n_elements` values of `type` from `src` into `dst`. `n_elements` must be a
// multiple of the type's block size (the caller checks row lengths when reading the file).
absl::Status DequantizeToFloat(GgmlType type, const void* src, size_t n_elements, float* dst);

// IEEE half and bfloat16 to float.
float HalfToFloat(uint16_t h);
float Bf16ToFloat(uint16_t b);

}  // namespace schism::formats

#endif  // SCHISM_COMMON_FORMATS_GGML_TYPES_H_
