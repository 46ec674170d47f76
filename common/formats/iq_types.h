// ggml's codebook ("IQ") quantization types of 1 to 3 bits per weight: each group of 4 or 8
// weights is an index into a fixed grid (common/formats/iq_grids.inc, generated from the gguf
// package), with signs and per-sub-block scales. Blocks of 256 weights, all little-endian:
//   IQ2_XXS 66: f16 d; 8 × (u32 four grid indices, u32 four 7-bit sign codes | 4-bit scale)
//   IQ2_XS  74: f16 d; u16 qs[32] (9-bit index | 7-bit sign code); u8 scales[8] (two 4-bit)
//   IQ2_S   82: f16 d; u8 qs[32]; u8 signs[32]; u8 qh[8] (index bits 8-9); u8 scales[8]
//   IQ3_XXS 98: f16 d; u8 qs[64] (indices of 4-value rows); 8 × u32 (sign codes | scale)
//   IQ3_S  110: f16 d; u8 qs[64]; u8 qh[8] (index bit 8); u8 signs[32]; u8 scales[4]
//   IQ1_S   50: f16 d; u8 qs[32]; u16 qh[8] (index bits 8-10 ×4, 3-bit scale, delta sign)
//   IQ1_M   56: u8 qs[32]; u8 qh[16] (index bits 8-10 | delta sign, per nibble); u16 scales[4]
//               (3-bit scales ×4 each, the f16 d spread over their top nibbles)
// A 7-bit sign code c stands for the 8 signs of c plus an eighth bit that makes the count of
// minus signs even. Each function writes 256 floats.
#ifndef SCHISM_COMMON_FORMATS_IQ_TYPES_H_
#define SCHISM_COMMON_FORMATS_IQ_TYPES_H_

#include <cstdint>

namespace schism::formats {

void DequantizeIq2XxsBlock(const uint8_t* block, float* y);
void DequantizeIq2XsBlock(const uint8_t* block, float* y);
void DequantizeIq2SBlock(const uint8_t* block, float* y);
void DequantizeIq3XxsBlock(const uint8_t* block, float* y);
void DequantizeIq3SBlock(const uint8_t* block, float* y);
void DequantizeIq1SBlock(const uint8_t* block, float* y);
void DequantizeIq1MBlock(const uint8_t* block, float* y);

}  // namespace schism::formats

#endif  // SCHISM_COMMON_FORMATS_IQ_TYPES_H_
