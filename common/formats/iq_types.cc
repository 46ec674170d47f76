#include "common/formats/iq_types.h"

#include "common/formats/ggml_types.h"

namespace schism::formats {
namespace {

#include "common/formats/iq_grids.inc"

uint16_t U16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t U32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
float Half(const uint8_t* p) { return HalfToFloat(U16(p)); }

// Value `col` of grid row `row`, as the float the gguf package's grid holds.
float GridValue(const char* grid, const int8_t* map, int cols, int row, int col) {
  return static_cast<float>(map[grid[row * cols + col] - '0']);
}
float Iq2Xxs(int row, int col) { return GridValue(kIq2XxsGrid, kIq2XxsMap, 8, row, col); }
float Iq2Xs(int row, int col) { return GridValue(kIq2XsGrid, kIq2XsMap, 8, row, col); }
float Iq2S(int row, int col) { return GridValue(kIq2SGrid, kIq2SMap, 8, row, col); }
float Iq3Xxs(int row, int col) { return GridValue(kIq3XxsGrid, kIq3XxsMap, 4, row, col); }
float Iq3S(int row, int col) { return GridValue(kIq3SGrid, kIq3SMap, 4, row, col); }
float Iq1(int row, int col) { return GridValue(kIq1Grid, kIq1Map, 8, row, col); }

// Sign k (±1) of a 7-bit sign code: its bits, then an eighth for even parity.
float CodedSign(uint32_t code, int k) {
  const uint32_t bits = code | (static_cast<uint32_t>(__builtin_popcount(code) & 1) << 7);
  return (bits >> k) & 1 ? -1.0f : 1.0f;
}
float BitSign(uint8_t byte, int k) { return (byte >> k) & 1 ? -1.0f : 1.0f; }

constexpr float kIq1Delta = 0.125f;

// IQ2_XS and IQ2_S: the scale of 8-weight group i, from 4-bit scales (two per byte, low first)
// that each cover 16 weights.
float Iq2GroupScale(const uint8_t* scales, int i, float d) {
  const int s = (scales[i / 4] >> (4 * ((i / 2) % 2))) & 0xF;
  return d * (0.5f + static_cast<float>(s)) * 0.25f;
}

}  // namespace

void DequantizeIq2XxsBlock(const uint8_t* block, float* y) {
  const float d = Half(block);
  for (int g = 0; g < 8; ++g) {
    const uint8_t* q = block + 2 + 8 * g;
    const uint32_t aux = U32(q + 4);
    const float db = d * (0.5f + static_cast<float>(aux >> 28)) * 0.25f;
    for (int j = 0; j < 4; ++j) {
      const uint32_t code = (aux >> (7 * j)) & 0x7F;
      for (int k = 0; k < 8; ++k) y[32 * g + 8 * j + k] = db * Iq2Xxs(q[j], k) * CodedSign(code, k);
    }
  }
}

void DequantizeIq2XsBlock(const uint8_t* block, float* y) {
  const float d = Half(block);
  const uint8_t* scales = block + 2 + 64;
  for (int i = 0; i < 32; ++i) {  // 8 weights each; scales per 16
    const uint16_t q = U16(block + 2 + 2 * i);
    const float db = Iq2GroupScale(scales, i, d);
    for (int k = 0; k < 8; ++k) y[8 * i + k] = db * Iq2Xs(q & 511, k) * CodedSign(q >> 9, k);
  }
}

void DequantizeIq2SBlock(const uint8_t* block, float* y) {
  const float d = Half(block);
  const uint8_t* qs = block + 2;
  const uint8_t* signs = qs + 32;
  const uint8_t* qh = signs + 32;
  const uint8_t* scales = qh + 8;
  for (int i = 0; i < 32; ++i) {
    const int row = qs[i] | (((qh[i / 4] >> (2 * (i % 4))) & 3) << 8);
    const float db = Iq2GroupScale(scales, i, d);
    for (int k = 0; k < 8; ++k) y[8 * i + k] = db * Iq2S(row, k) * BitSign(signs[i], k);
  }
}

void DequantizeIq3XxsBlock(const uint8_t* block, float* y) {
  const float d = Half(block);
  const uint8_t* qs = block + 2;
  for (int g = 0; g < 8; ++g) {
    const uint32_t aux = U32(block + 2 + 64 + 4 * g);
    const float db = d * (0.5f + static_cast<float>(aux >> 28)) * 0.5f;
    for (int e = 0; e < 32; ++e) {
      const int j = e / 8, k = e % 8, m = 32 * g + e;
      y[m] = db * Iq3Xxs(qs[m / 4], m % 4) * CodedSign((aux >> (7 * j)) & 0x7F, k);
    }
  }
}

void DequantizeIq3SBlock(const uint8_t* block, float* y) {
  const float d = Half(block);
  const uint8_t* qs = block + 2;
  const uint8_t* qh = qs + 64;
  const uint8_t* signs = qh + 8;
  const uint8_t* scales = signs + 32;
  for (int m = 0; m < 256; ++m) {
    const int i = m / 4;  // qs index: 4 weights each
    const int row = qs[i] | (((qh[i / 8] >> (i % 8)) & 1) << 8);
    const int s = (scales[m / 64] >> (4 * ((m / 32) % 2))) & 0xF;
    const float db = d * static_cast<float>(1 + 2 * s);
    y[m] = db * Iq3S(row, m % 4) * BitSign(signs[m / 8], m % 8);
  }
}

void DequantizeIq1SBlock(const uint8_t* block, float* y) {
  const float d = Half(block);
  const uint8_t* qs = block + 2;
  for (int i = 0; i < 8; ++i) {  // 32 weights each
    const uint16_t qh = U16(block + 34 + 2 * i);
    const float dl = d * static_cast<float>(2 * ((qh >> 12) & 7) + 1);
    const float delta = (qh & 0x8000) == 0 ? kIq1Delta : -kIq1Delta;
    for (int j = 0; j < 4; ++j) {
      const int row = qs[4 * i + j] | (((qh >> (3 * j)) & 7) << 8);
      for (int k = 0; k < 8; ++k) y[32 * i + 8 * j + k] = dl * (Iq1(row, k) + delta);
    }
  }
}

void DequantizeIq1MBlock(const uint8_t* block, float* y) {
  const uint8_t* qs = block;
  const uint8_t* qh = block + 32;
  const uint8_t* sc = block + 48;
  uint16_t scales[4];
  for (int i = 0; i < 4; ++i) scales[i] = U16(sc + 2 * i);
  const uint16_t d_bits =
      static_cast<uint16_t>(((scales[0] & 0xF000) >> 12) | ((scales[1] & 0xF000) >> 8) |
                            ((scales[2] & 0xF000) >> 4) | (scales[3] & 0xF000));
  const float d = HalfToFloat(d_bits);
  for (int m = 0; m < 32; ++m) {  // 8 weights each; scales per 16
    const int nibble = (qh[m / 2] >> (4 * (m % 2))) & 0xF;
    const int row = qs[m] | ((nibble & 7) << 8);
    const float delta = (nibble & 8) == 0 ? kIq1Delta : -kIq1Delta;
    const int half_block = m / 2;  // 16 weights
    const int s = (scales[half_block / 4] >> (3 * (half_block % 4))) & 7;
    const float dl = d * static_cast<float>(2 * s + 1);
    for (int k = 0; k < 8; ++k) y[8 * m + k] = dl * (Iq1(row, k) + delta);
  }
}

}  // namespace schism::formats
