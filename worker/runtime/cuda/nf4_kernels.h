// CUDA kernels for packed NF4 weights (built with -DSCHISM_CUDA=ON; nf4.cc and transformer.cc
// call them for tensors on a CUDA device and fall back to ATen ops in builds without them).
//
// Layout as nf4.h: the (out, in) weight flattened row-major in blocks of 64, two 4-bit codes per
// byte (first value in the high nibble). Block scales are read as stored: a float32 absmax per
// block, or (double quantization) a uint8 code per block into bnb's dynamic map × the absmax2 of
// its 256 blocks + the offset, computed in the kernel with the CPU's float32 roundings.
#ifndef SCHISM_WORKER_RUNTIME_CUDA_NF4_KERNELS_H_
#define SCHISM_WORKER_RUNTIME_CUDA_NF4_KERNELS_H_

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>

#include "worker/runtime/nf4.h"

namespace schism::model::cuda {

// True when this build has the kernels.
bool Nf4KernelsBuilt();

// The dense (out, in) weight of a 2-D `q` on a CUDA device, in `dtype` (float32, bfloat16 or
// float16).
at::Tensor Nf4Dequantize(const Nf4Tensor& q, c10::ScalarType dtype);

// y = x Wᵀ for the few rows of a decode step (rows ≤ kNf4GemvMaxRows), reading W's codes once:
// x (rows, in) in the compute dtype, `in` a multiple of 64; y (rows, out) in x's dtype, float32
// accumulation. bitsandbytes' gemv_4bit is the model: one warp per output row.
inline constexpr int64_t kNf4GemvMaxRows = 8;
at::Tensor Nf4Gemv(const at::Tensor& x, const Nf4Tensor& q);

}  // namespace schism::model::cuda

#endif  // SCHISM_WORKER_RUNTIME_CUDA_NF4_KERNELS_H_
