#include "worker/runtime/nf4.h"

#include "worker/runtime/intra_op_parallel.h"
#include "worker/runtime/nf4_codebook.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#ifdef SCHISM_WITH_CUDA_KERNELS
#include "worker/runtime/cuda/nf4_kernels.h"
#endif

namespace schism::model {
namespace {

// Index of the nearest entry of an ascending code table; exact midpoints go to the lower
// entry, as bitsandbytes' comparison tree (`x > midpoint`) does.
template <size_t N>
uint8_t NearestCode(const std::array<float, N>& codes, float x) {
  auto it = std::lower_bound(codes.begin(), codes.end(), x);
  if (it == codes.begin()) return 0;
  if (it == codes.end()) return static_cast<uint8_t>(N - 1);
  const size_t hi = it - codes.begin();
  const float mid = (codes[hi - 1] + codes[hi]) / 2;
  return static_cast<uint8_t>(x > mid ? hi : hi - 1);
}

}  // namespace

const std::array<float, 16>& Nf4Codebook() {
  static const std::array<float, 16> kCodes = {SCHISM_NF4_CODEBOOK};
  return kCodes;
}

const std::array<float, 256>& DynamicMap8Bit() {
  static const std::array<float, 256> kMap = [] {
    // 7 exponent ranges 10^-6..10^0; range i holds 2^i fractions (midpoints of a linspace from
    // 0.1 to 1), each positive and negative; then 0 and 1; sorted.
    std::vector<double> data;
    for (int i = 0; i < 7; ++i) {
      const int items = (1 << i) + 1;
      const double scale = std::pow(10.0, -6 + i);
      std::vector<float> boundaries(items);
      for (int k = 0; k < items; ++k) {
        boundaries[k] = static_cast<float>(0.1 + (1.0 - 0.1) * k / (items - 1));
      }
      for (int k = 0; k + 1 < items; ++k) {
        const float mean = (boundaries[k] + boundaries[k + 1]) / 2.0f;
        data.push_back(static_cast<float>(scale * mean));
        data.push_back(static_cast<float>(-scale * mean));
      }
    }
    data.push_back(0.0);
    data.push_back(1.0);
    std::sort(data.begin(), data.end());
    std::array<float, 256> out{};
    for (size_t i = 0; i < 256; ++i) out[i] = static_cast<float>(data[i]);
    return out;
  }();
  return kMap;
}

Nf4Tensor QuantizeNf4(const at::Tensor& weight, bool double_quant) {
  auto flat = weight.to(at::kFloat).contiguous().view(-1);
  const int64_t n = flat.numel();
  TORCH_CHECK(n % kNf4BlockSize == 0, "NF4 needs a multiple of 64 elements, got ", n);
  const int64_t blocks = n / kNf4BlockSize;
  Nf4Tensor q;
  q.shape = weight.sizes().vec();
  q.double_quant = double_quant;
  q.packed = at::empty({n / 2}, at::kByte);
  auto absmax = at::empty({blocks}, at::kFloat);
  const float* x = flat.data_ptr<float>();
  uint8_t* packed = q.packed.data_ptr<uint8_t>();
  float* am = absmax.data_ptr<float>();
  const auto& codes = Nf4Codebook();
  for (int64_t b = 0; b < blocks; ++b) {
    const float* block = x + b * kNf4BlockSize;
    float m = 0;
    for (int i = 0; i < kNf4BlockSize; ++i) m = std::max(m, std::fabs(block[i]));
    am[b] = m;
    const float inv = m == 0 ? 0.0f : 1.0f / m;
    for (int i = 0; i < kNf4BlockSize; i += 2) {
      const uint8_t hi = NearestCode(codes, block[i] * inv);
      const uint8_t lo = NearestCode(codes, block[i + 1] * inv);
      packed[(b * kNf4BlockSize + i) / 2] = static_cast<uint8_t>(hi << 4 | lo);
    }
  }
  if (!double_quant) {
    q.absmax = absmax;
    return q;
  }
  // Double quantization: center the absmax values, then 8-bit blockwise with the dynamic map.
  q.absmax_offset = static_cast<float>(absmax.to(at::kDouble).mean().item<double>());
  auto centered = absmax - q.absmax_offset;
  const int64_t blocks2 = (blocks + kNf4AbsmaxBlockSize - 1) / kNf4AbsmaxBlockSize;
  q.absmax_codes = at::empty({blocks}, at::kByte);
  q.absmax2 = at::empty({blocks2}, at::kFloat);
  const float* c = centered.data_ptr<float>();
  uint8_t* codes8 = q.absmax_codes.data_ptr<uint8_t>();
  float* am2 = q.absmax2.data_ptr<float>();
  const auto& map = DynamicMap8Bit();
  for (int64_t b = 0; b < blocks2; ++b) {
    const int64_t begin = b * kNf4AbsmaxBlockSize,
                  end = std::min(blocks, begin + kNf4AbsmaxBlockSize);
    float m = 0;
    for (int64_t i = begin; i < end; ++i) m = std::max(m, std::fabs(c[i]));
    am2[b] = m;
    const float inv = m == 0 ? 0.0f : 1.0f / m;
    for (int64_t i = begin; i < end; ++i) codes8[i] = NearestCode(map, c[i] * inv);
  }
  return q;
}

at::Tensor Nf4BlockAbsmax(const Nf4Tensor& q) {
  if (!q.double_quant) return q.absmax;
  const auto& map = DynamicMap8Bit();
  const at::Tensor table =
      at::from_blob(const_cast<float*>(map.data()), {256}, at::kFloat).to(q.absmax_codes.device());
  const int64_t blocks = q.absmax_codes.numel();
  const at::Tensor scale2 = q.absmax2.repeat_interleave(kNf4AbsmaxBlockSize).narrow(0, 0, blocks);
  return table.index_select(0, q.absmax_codes.to(at::kInt)) * scale2 + q.absmax_offset;
}

at::Tensor DequantizeNf4(const Nf4Tensor& q, c10::ScalarType dtype) {
  const int64_t n = q.packed.numel() * 2;
  const int64_t blocks = n / kNf4BlockSize;
#ifdef SCHISM_WITH_CUDA_KERNELS
  if (q.packed.is_cuda() && q.shape.size() == 2) {
    return cuda::Nf4Dequantize(q, dtype);
  }
#endif
  if (!q.packed.device().is_cpu()) return DequantizeNf4WithAtenOps(q, dtype);
  const at::Tensor absmax = Nf4BlockAbsmax(q).contiguous();
  auto out = at::empty({n}, at::kFloat);
  const float* scale = absmax.data_ptr<float>();
  const uint8_t* packed = q.packed.data_ptr<uint8_t>();
  float* y = out.data_ptr<float>();
  const auto& codes = Nf4Codebook();
  at::parallel_for(0, blocks, 64, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const float s = scale[b];
      for (int64_t i = b * kNf4BlockSize / 2; i < (b + 1) * kNf4BlockSize / 2; ++i) {
        y[2 * i] = codes[packed[i] >> 4] * s;
        y[2 * i + 1] = codes[packed[i] & 0x0F] * s;
      }
    }
  });
  return out.view(q.shape).to(dtype);
}

at::Tensor DequantizeNf4WithAtenOps(const Nf4Tensor& q, c10::ScalarType dtype) {
  const int64_t blocks = q.packed.numel() * 2 / kNf4BlockSize;
  const auto& codes = Nf4Codebook();
  const at::Tensor table =
      at::from_blob(const_cast<float*>(codes.data()), {16}, at::kFloat).to(q.packed.device());
  const at::Tensor nibbles =
      at::stack({q.packed.bitwise_right_shift(4), q.packed.bitwise_and(0x0F)}, 1);
  const at::Tensor values =
      table.index_select(0, nibbles.view(-1).to(at::kInt)).view({blocks, kNf4BlockSize});
  return (values * Nf4BlockAbsmax(q).unsqueeze(1)).view(q.shape).to(dtype);
}

Nf4Tensor Nf4ToDevice(const Nf4Tensor& q, const c10::Device& device) {
  Nf4Tensor out = q;
  auto move = [&](at::Tensor& t) {
    if (t.defined()) t = t.to(device);
  };
  move(out.packed);
  move(out.absmax);
  move(out.absmax_codes);
  move(out.absmax2);
  return out;
}

int64_t Nf4Bytes(const Nf4Tensor& q) {
  int64_t bytes = 0;
  for (const at::Tensor* t : {&q.packed, &q.absmax, &q.absmax_codes, &q.absmax2}) {
    if (t->defined()) bytes += t->numel() * t->element_size();
  }
  return bytes;
}

}  // namespace schism::model
