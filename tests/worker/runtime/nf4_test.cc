#include "worker/runtime/nf4.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace schism::model {
namespace {

// Half the widest gap between neighbouring NF4 codes: the worst rounding, as a fraction of absmax.
float MaxHalfGap() {
  const auto& c = Nf4Codebook();
  float gap = 0;
  for (size_t i = 1; i < c.size(); ++i) gap = std::max(gap, c[i] - c[i - 1]);
  return gap / 2;
}

TEST(Nf4, PackingIsBitIdenticalToTheBitsandbytesLayoutReference) {
  const std::string dir = testing_support::MakeTempDir("nf4_ref");
  std::string log;
  ASSERT_EQ(testing_support::RunOracle("nf4_reference.py", {dir}, &log), 0) << log;
  std::vector<float> w = testing_support::ReadFloats(dir + "/weight.f32");
  ASSERT_EQ(w.size(), 96u * 64u);
  auto weight = at::from_blob(w.data(), {96, 64}, at::kFloat).clone();
  Nf4Tensor q = QuantizeNf4(weight, /*double_quant=*/false);
  const std::string packed = testing_support::ReadFile(dir + "/packed.u8");
  ASSERT_EQ(static_cast<size_t>(q.packed.numel()), packed.size());
  EXPECT_EQ(std::memcmp(q.packed.data_ptr<uint8_t>(), packed.data(), packed.size()), 0);
  std::vector<float> absmax = testing_support::ReadFloats(dir + "/absmax.f32");
  EXPECT_TRUE(at::equal(
      q.absmax, at::from_blob(absmax.data(), {static_cast<int64_t>(absmax.size())}, at::kFloat)));
}

// The production layout (double quantization, as workers load every linear layer) against the
// numpy reference: codes, absmax codes, absmax2 and offset bit for bit, and the dequantized
// weight through both the CPU loop and the ATen ops other devices run.
TEST(Nf4, DoubleQuantizationIsBitIdenticalToTheBitsandbytesLayoutReference) {
  const std::string dir = testing_support::MakeTempDir("nf4_dq_ref");
  std::string log;
  ASSERT_EQ(testing_support::RunOracle("nf4_reference.py", {dir}, &log), 0) << log;
  std::vector<float> w = testing_support::ReadFloats(dir + "/dq_weight.f32");
  ASSERT_EQ(w.size(), 160u * 192u);
  auto weight = at::from_blob(w.data(), {160, 192}, at::kFloat).clone();
  const Nf4Tensor q = QuantizeNf4(weight, /*double_quant=*/true);
  auto bytes_equal = [](const at::Tensor& t, const std::string& expected) {
    return static_cast<size_t>(t.numel()) == expected.size() &&
           std::memcmp(t.data_ptr<uint8_t>(), expected.data(), expected.size()) == 0;
  };
  auto floats = [&](const std::string& name) {
    std::vector<float> v = testing_support::ReadFloats(dir + "/" + name);
    return at::from_blob(v.data(), {static_cast<int64_t>(v.size())}, at::kFloat).clone();
  };
  EXPECT_TRUE(bytes_equal(q.packed, testing_support::ReadFile(dir + "/dq_packed.u8")));
  EXPECT_TRUE(bytes_equal(q.absmax_codes, testing_support::ReadFile(dir + "/dq_codes.u8")));
  EXPECT_EQ(q.absmax2.numel(), 2);  // 480 blocks: 256 + a partial 224
  EXPECT_TRUE(at::equal(q.absmax2, floats("dq_absmax2.f32")));
  EXPECT_EQ(q.absmax_offset, floats("dq_offset.f32")[0].item<float>());
  const at::Tensor expected = floats("dq_dequantized.f32").view({160, 192});
  EXPECT_TRUE(at::equal(DequantizeNf4(q), expected));
  EXPECT_TRUE(at::equal(DequantizeNf4WithAtenOps(q, at::kFloat), expected));
  EXPECT_TRUE(at::equal(DequantizeNf4(q, at::kBFloat16), expected.to(at::kBFloat16)));
  // 4 bits per weight plus one byte per 64 and 4 bytes per 16384: 0.516 bytes per weight.
  EXPECT_EQ(Nf4Bytes(q), 160 * 192 / 2 + 480 + 2 * 4);
}

TEST(Nf4, RoundTripErrorStaysWithinTheCodebookBound) {
  at::manual_seed(3);
  auto w = at::randn({256, 512}) * 0.02;
  for (bool double_quant : {false, true}) {
    Nf4Tensor q = QuantizeNf4(w, double_quant);
    auto back = DequantizeNf4(q);
    ASSERT_EQ(back.sizes(), w.sizes());
    auto blocks = w.view({-1, kNf4BlockSize});
    auto absmax = std::get<0>(blocks.abs().max(1, true));
    auto error = (back.view({-1, kNf4BlockSize}) - blocks).abs();
    // Each value is off by at most half a code gap of its block's absmax, plus (with double
    // quantization) however much the stored absmax itself moved; codes are within [-1, 1].
    auto stored_absmax = std::get<0>(back.view({-1, kNf4BlockSize}).abs().max(1, true));
    auto absmax_error = double_quant ? (stored_absmax - absmax).abs() : at::zeros_like(absmax);
    EXPECT_TRUE((error <= absmax * MaxHalfGap() + absmax_error + 1e-6).all().item<bool>())
        << double_quant;
    if (double_quant) {
      EXPECT_LT((absmax_error / absmax).max().item<float>(), 0.02f);
    }
    EXPECT_LT((back - w).pow(2).mean().item<float>() / w.pow(2).mean().item<float>(), 0.02f);
  }
  // Double quantization stores one byte per block instead of four.
  EXPECT_EQ(QuantizeNf4(w, true).absmax_codes.numel(), w.numel() / kNf4BlockSize);
}

TEST(Nf4, DynamicMapHas256SortedValuesFromMinusOneToOne) {
  const auto& map = DynamicMap8Bit();
  EXPECT_TRUE(std::is_sorted(map.begin(), map.end()));
  EXPECT_FLOAT_EQ(map.back(), 1.0f);
  EXPECT_NEAR(map.front(), -0.9928f, 1e-3);
  EXPECT_EQ(std::count(map.begin(), map.end(), 0.0f), 1);
}

}  // namespace
}  // namespace schism::model
