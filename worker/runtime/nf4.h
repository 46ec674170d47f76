// bitsandbytes-compatible NF4 4-bit quantization (blocksize 64, the NF4 code book, optional double
// quantization of the absmax values with bnb's dynamic 8-bit map in blocks of 256).
//
// Layout, as bitsandbytes stores a Linear4bit weight: the (out, in) matrix is flattened
// row-major; each block of 64 values is scaled by its absmax; each value becomes the index of
// the nearest NF4 code; two indices share a byte, the first in the high nibble.
#ifndef SCHISM_WORKER_RUNTIME_NF4_H_
#define SCHISM_WORKER_RUNTIME_NF4_H_

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <array>
#include <cstdint>
#include <vector>

namespace schism::model {

inline constexpr int kNf4BlockSize = 64;
inline constexpr int kNf4AbsmaxBlockSize = 256;  // double quantization of the absmax

// The 16 NF4 code values (normal-float quantiles), ascending.
const std::array<float, 16>& Nf4Codebook();
// bitsandbytes' signed dynamic 8-bit map (create_dynamic_map), used for the absmax.
const std::array<float, 256>& DynamicMap8Bit();

struct Nf4Tensor {
  at::Tensor packed;  // uint8, ceil(numel / 2)
  // Plain: float32 absmax per block. Double-quantized: uint8 codes per block, plus float32
  // absmax2 per 256 codes and the float32 offset (mean absmax) that was subtracted.
  at::Tensor absmax;
  at::Tensor absmax_codes;
  at::Tensor absmax2;
  float absmax_offset = 0;
  bool double_quant = false;
  std::vector<int64_t> shape;
};

// `weight` is float32 (any shape, on the CPU); numel must be a multiple of 64. The mean absmax
// that double quantization subtracts is computed in float64 and rounded once.
Nf4Tensor QuantizeNf4(const at::Tensor& weight, bool double_quant);
// The original shape in `dtype`, on the device the codes live on: a fused loop on the CPU, ATen
// ops elsewhere (the same float32 arithmetic: code × absmax, absmax = map[c] × absmax2 + offset).
at::Tensor DequantizeNf4(const Nf4Tensor& q, c10::ScalarType dtype = c10::ScalarType::Float);
// The float32 absmax of every block (double quantization undone), on the codes' device.
at::Tensor Nf4BlockAbsmax(const Nf4Tensor& q);
// The ATen-ops path of DequantizeNf4 on any device (the CPU too, for tests).
at::Tensor DequantizeNf4WithAtenOps(const Nf4Tensor& q, c10::ScalarType dtype);
// The same codes on another device (what a worker keeps of a 4-bit linear layer).
Nf4Tensor Nf4ToDevice(const Nf4Tensor& q, const c10::Device& device);
// Bytes the codes and scales occupy.
int64_t Nf4Bytes(const Nf4Tensor& q);

}  // namespace schism::model

#endif  // SCHISM_WORKER_RUNTIME_NF4_H_
