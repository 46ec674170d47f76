#include "worker/runtime/cuda/nf4_kernels.h"
#include "worker/runtime/nf4_codebook.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <mutex>
#include <set>

namespace schism::model::cuda {
namespace {

// The NF4 code book (nf4_codebook.h, shared with nf4.cc).
__constant__ float kCodes[16] = {SCHISM_NF4_CODEBOOK};

// bnb's dynamic 8-bit map (nf4.cc's DynamicMap8Bit), copied in once.
__constant__ float kDynamicMap[256];

// Where a block's scale comes from: `absmax` (plain), or `codes`/`absmax2`/`offset` (double quant).
struct BlockScales {
  const float* absmax;
  const uint8_t* codes;
  const float* absmax2;
  float offset;
};

// map[c] × absmax2 + offset with separate roundings (no FMA), as the CPU computes it.
__device__ __forceinline__ float BlockScale(const BlockScales& s, int64_t block) {
  if (s.codes == nullptr) return s.absmax[block];
  return __fadd_rn(__fmul_rn(kDynamicMap[s.codes[block]], s.absmax2[block / 256]), s.offset);
}

// The scales of `q`; the dynamic map reaches each device's constant memory on first use there.
BlockScales ScalesOf(const Nf4Tensor& q) {
  static std::mutex mutex;
  static std::set<c10::DeviceIndex> devices;
  if (q.double_quant) {
    const std::lock_guard<std::mutex> lock(mutex);
    if (devices.insert(q.packed.device().index()).second) {
      C10_CUDA_CHECK(cudaMemcpyToSymbol(kDynamicMap, DynamicMap8Bit().data(), 256 * sizeof(float)));
    }
  }
  if (!q.double_quant) return {q.absmax.data_ptr<float>(), nullptr, nullptr, 0.0f};
  return {nullptr, q.absmax_codes.data_ptr<uint8_t>(), q.absmax2.data_ptr<float>(),
          q.absmax_offset};
}

template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) {
  return __float2half(v);
}

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }

// One thread per packed byte (two weights); the value is code × absmax in float32, as the CPU path.
template <typename T>
__global__ void DequantizeKernel(const uint8_t* __restrict__ packed, BlockScales scales,
                                 T* __restrict__ out, int64_t n_bytes) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n_bytes) return;
  const float scale = BlockScale(scales, (2 * i) / 64);
  const uint8_t byte = packed[i];
  out[2 * i] = FromFloat<T>(__fmul_rn(kCodes[byte >> 4], scale));
  out[2 * i + 1] = FromFloat<T>(__fmul_rn(kCodes[byte & 0x0F], scale));
}

// One warp per output row: each lane takes 8 consecutive weights (4 bytes, one 32-bit load) per
// step, so a warp covers 256 weights (four absmax blocks) per step; x (a few rows, reused by every
// warp) is read through the read-only cache; partial sums are reduced across the warp.
template <typename T, int kRows>
__global__ void GemvKernel(const T* __restrict__ x, const uint8_t* __restrict__ packed,
                           BlockScales scales, T* __restrict__ y, int64_t out, int64_t in) {
  const int warps = blockDim.x / 32, lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * static_cast<int64_t>(warps) + threadIdx.x / 32;
  if (row >= out) return;
  float acc[kRows] = {};
  const uint8_t* w = packed + row * (in / 2);
  const int64_t first_block = row * (in / 64);
  for (int64_t k = lane * 8; k < in; k += 256) {
    const uint32_t word = *reinterpret_cast<const uint32_t*>(w + k / 2);
    const float scale = BlockScale(scales, first_block + k / 64);
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      const uint8_t byte = static_cast<uint8_t>(word >> (8 * b));
      const float w0 = kCodes[byte >> 4] * scale, w1 = kCodes[byte & 0x0F] * scale;
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        acc[r] += w0 * ToFloat(__ldg(x + r * in + k + 2 * b)) +
                  w1 * ToFloat(__ldg(x + r * in + k + 2 * b + 1));
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    float v = acc[r];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (lane == 0) y[r * out + row] = FromFloat<T>(v);
  }
}

template <typename T, int kRows>
void LaunchGemv(const at::Tensor& x, const at::Tensor& packed, const BlockScales& scales,
                at::Tensor& y, int64_t out, int64_t in) {
  constexpr int kWarps = 4;
  const dim3 grid(static_cast<unsigned>((out + kWarps - 1) / kWarps));
  GemvKernel<T, kRows><<<grid, kWarps * 32, 0, at::cuda::getCurrentCUDAStream()>>>(
      reinterpret_cast<const T*>(x.data_ptr()), packed.data_ptr<uint8_t>(), scales,
      reinterpret_cast<T*>(y.data_ptr()), out, in);
}

template <typename T>
void DispatchRows(int64_t rows, const at::Tensor& x, const at::Tensor& packed,
                  const BlockScales& scales, at::Tensor& y, int64_t out, int64_t in) {
  switch (rows) {
    case 1:
      return LaunchGemv<T, 1>(x, packed, scales, y, out, in);
    case 2:
      return LaunchGemv<T, 2>(x, packed, scales, y, out, in);
    case 3:
    case 4:
      return LaunchGemv<T, 4>(x, packed, scales, y, out, in);
    default:
      return LaunchGemv<T, 8>(x, packed, scales, y, out, in);
  }
}

}  // namespace

bool Nf4KernelsBuilt() { return true; }

at::Tensor Nf4Dequantize(const Nf4Tensor& q, c10::ScalarType dtype) {
  TORCH_CHECK(q.packed.is_cuda() && q.shape.size() == 2,
              "Nf4Dequantize: a 2-D weight on a CUDA device");
  const int64_t out = q.shape[0], in = q.shape[1];
  TORCH_CHECK(q.packed.numel() * 2 == out * in, "Nf4Dequantize: bad sizes");
  const c10::cuda::CUDAGuard guard(q.packed.device());
  auto y = at::empty({out, in}, q.packed.options().dtype(dtype));
  const int64_t n = q.packed.numel();
  const unsigned blocks = static_cast<unsigned>((n + 255) / 256);
  auto stream = at::cuda::getCurrentCUDAStream();
  const uint8_t* p = q.packed.data_ptr<uint8_t>();
  const BlockScales scales = ScalesOf(q);
  switch (dtype) {
    case c10::ScalarType::Float:
      DequantizeKernel<float><<<blocks, 256, 0, stream>>>(p, scales, y.data_ptr<float>(), n);
      break;
    case c10::ScalarType::BFloat16:
      DequantizeKernel<__nv_bfloat16><<<blocks, 256, 0, stream>>>(
          p, scales, reinterpret_cast<__nv_bfloat16*>(y.data_ptr()), n);
      break;
    case c10::ScalarType::Half:
      DequantizeKernel<__half>
          <<<blocks, 256, 0, stream>>>(p, scales, reinterpret_cast<__half*>(y.data_ptr()), n);
      break;
    default:
      TORCH_CHECK(false, "Nf4Dequantize: unsupported dtype ", dtype);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

at::Tensor Nf4Gemv(const at::Tensor& x, const Nf4Tensor& q) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 2, "Nf4Gemv: x must be a (rows, in) CUDA tensor");
  TORCH_CHECK(q.packed.is_cuda() && q.shape.size() == 2, "Nf4Gemv: a 2-D weight on a CUDA device");
  const int64_t rows = x.size(0), in = x.size(1), out = q.shape[0];
  const at::Tensor& packed = q.packed;
  TORCH_CHECK(rows >= 1 && rows <= kNf4GemvMaxRows, "Nf4Gemv: 1 to ", kNf4GemvMaxRows,
              " rows, got ", rows);
  TORCH_CHECK(in % 64 == 0, "Nf4Gemv: in must be a multiple of 64");
  TORCH_CHECK(packed.numel() * 2 == out * in && q.shape[1] == in, "Nf4Gemv: bad sizes");
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous();
  const BlockScales a = ScalesOf(q);
  // Rows of x beyond `rows` up to the kernel's row count are zero padding.
  const int64_t padded = rows <= 2 ? rows : (rows <= 4 ? 4 : 8);
  at::Tensor xp =
      padded == rows ? xc : at::cat({xc, at::zeros({padded - rows, in}, xc.options())}, 0);
  auto y = at::empty({padded, out}, x.options());
  switch (x.scalar_type()) {
    case c10::ScalarType::Float:
      DispatchRows<float>(padded, xp, packed, a, y, out, in);
      break;
    case c10::ScalarType::BFloat16:
      DispatchRows<__nv_bfloat16>(padded, xp, packed, a, y, out, in);
      break;
    case c10::ScalarType::Half:
      DispatchRows<__half>(padded, xp, packed, a, y, out, in);
      break;
    default:
      TORCH_CHECK(false, "Nf4Gemv: unsupported dtype ", x.scalar_type());
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return padded == rows ? y : y.narrow(0, 0, rows);
}

}  // namespace schism::model::cuda
