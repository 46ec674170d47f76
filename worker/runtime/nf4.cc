#include "worker/runtime/nf4.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

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
  static const std::array<float, 16> kCodes = {
      -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
      -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
      0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
      0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
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
  auto flat = weight.to(torch::kFloat).contiguous().view(-1);
  const int64_t n = flat.numel();
  TORCH_CHECK(n % kNf4BlockSize == 0, "NF4 needs a multiple of 64 elements, got ", n);
  const int64_t blocks = n / kNf4BlockSize;
  Nf4Tensor q;
  q.shape = weight.sizes().vec();
  q.double_quant = double_quant;
  q.packed = torch::empty({n / 2}, torch::kUInt8);
  auto absmax = torch::empty({blocks}, torch::kFloat);
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
  q.absmax_offset = absmax.mean().item<float>();
  auto centered = absmax - q.absmax_offset;
  const int64_t blocks2 = (blocks + kNf4AbsmaxBlockSize - 1) / kNf4AbsmaxBlockSize;
  q.absmax_codes = torch::empty({blocks}, torch::kUInt8);
  q.absmax2 = torch::empty({blocks2}, torch::kFloat);
  const float* c = centered.data_ptr<float>();
  uint8_t* codes8 = q.absmax_codes.data_ptr<uint8_t>();
  float* am2 = q.absmax2.data_ptr<float>();
  const auto& map = DynamicMap8Bit();
  for (int64_t b = 0; b < blocks2; ++b) {
    const int64_t begin = b * kNf4AbsmaxBlockSize, end = std::min(blocks, begin + kNf4AbsmaxBlockSize);
    float m = 0;
    for (int64_t i = begin; i < end; ++i) m = std::max(m, std::fabs(c[i]));
    am2[b] = m;
    const float inv = m == 0 ? 0.0f : 1.0f / m;
    for (int64_t i = begin; i < end; ++i) codes8[i] = NearestCode(map, c[i] * inv);
  }
  return q;
}

at::Tensor DequantizeNf4(const Nf4Tensor& q) {
  const int64_t n = q.packed.numel() * 2;
  const int64_t blocks = n / kNf4BlockSize;
  auto out = torch::empty({n}, torch::kFloat);
  std::vector<float> absmax(blocks);
  if (q.double_quant) {
    const uint8_t* codes8 = q.absmax_codes.data_ptr<uint8_t>();
    const float* am2 = q.absmax2.data_ptr<float>();
    const auto& map = DynamicMap8Bit();
    for (int64_t b = 0; b < blocks; ++b) {
      absmax[b] = map[codes8[b]] * am2[b / kNf4AbsmaxBlockSize] + q.absmax_offset;
    }
  } else {
    std::copy_n(q.absmax.data_ptr<float>(), blocks, absmax.begin());
  }
  const uint8_t* packed = q.packed.data_ptr<uint8_t>();
  float* y = out.data_ptr<float>();
  const auto& codes = Nf4Codebook();
  for (int64_t i = 0; i < n / 2; ++i) {
    const float scale = absmax[(2 * i) / kNf4BlockSize];
    y[2 * i] = codes[packed[i] >> 4] * scale;
    y[2 * i + 1] = codes[packed[i] & 0x0F] * scale;
  }
  return out.view(q.shape);
}

}  // namespace schism::model
