// The fused CPU kernels (fused_cpu_ops.h) against the ATen expressions they replace in the
// decoder: RoPE bit for bit, RMSNorm and the adapters within the float32 rounding of their sums.
#include "worker/runtime/fused_cpu_ops.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <limits>

namespace schism::model {
namespace {

constexpr float kEpsilon = std::numeric_limits<float>::epsilon();

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// Largest |got - expected| in units of the largest |expected| times float32's epsilon.
float Ulps(const at::Tensor& got, const at::Tensor& expected) {
  return (got - expected).abs().max().item<float>() /
         (expected.abs().max().item<float>() * kEpsilon);
}

TEST(FusedCpuOps, RopeEqualsTheAtenExpressionBitForBit) {
  at::manual_seed(3);
  // SmolLM2's heads (9 x 64), a decode step and a prefill; Gemma 3's 256-wide heads.
  for (auto [B, T, H, hd] :
       {std::array<int64_t, 4>{64, 1, 9, 64}, {5, 13, 3, 64}, {2, 7, 4, 256}}) {
    const at::Tensor x = at::randn({B, T, H, hd}) * 3;
    const at::Tensor angles = at::rand({B, 1, T, hd / 2}) * 100;
    const at::Tensor emb = at::cat({angles, angles}, -1);
    const at::Tensor cos = emb.cos(), sin = emb.sin();
    const at::Tensor xt = x.transpose(1, 2);  // (B, H, T, hd), as the decoder applies it
    const at::Tensor expected = (xt * cos + RotateHalf(xt) * sin).transpose(1, 2);
    EXPECT_TRUE(at::equal(fused::Rope(x, cos, sin), expected)) << B << "x" << T << "x" << H;
  }
}

// Measured: at most 1.5 ulps of the largest output (the sum of squares is rounded once from
// double, ATen adds float32 partial sums; both round x * rsqrt and the weight's product).
TEST(FusedCpuOps, RmsNormMatchesTheAtenExpressionWithinTwoUlps) {
  at::manual_seed(4);
  for (auto [rows, width] : {std::pair<int64_t, int64_t>{64, 576}, {1, 896}, {37, 1536}}) {
    const at::Tensor x = at::randn({rows, width}) * 4 + 1;
    const at::Tensor weight = at::randn({width});
    const double eps = 1e-5;
    const at::Tensor expected = weight * (x * at::rsqrt(x.pow(2).mean(-1, true) + eps));
    const at::Tensor got =
        fused::RmsNorm(x.view({1, rows, width}), weight, eps).view({rows, width});
    const float ulps = Ulps(got, expected);
    std::printf("  RMSNorm %ldx%ld: %.2f ulps from ATen's\n", rows, width, ulps);
    EXPECT_LE(ulps, 2.0f) << rows << "x" << width;
  }
  // A zero row stays zero (rsqrt(eps) times 0), not NaN.
  const at::Tensor zeros = at::zeros({2, 64});
  EXPECT_TRUE(at::equal(fused::RmsNorm(zeros, at::ones({64}), 1e-6), zeros));
}

struct AdapterCase {
  at::Tensor y, x, a, b, scale, row_trial;
};

AdapterCase RandomAdapter(int64_t B, int64_t T, int64_t in, int64_t out, int64_t k) {
  return {at::randn({B, T, out}), at::randn({B, T, in}),    at::randn({k, in}) * 0.1,
          at::randn({k, out}),    at::rand({k, out}) + 0.5, at::randint(0, k, {B}, at::kLong)};
}

at::Tensor AtenAdapter(const AdapterCase& c, bool scaled) {
  const at::Tensor a = c.a.index_select(0, c.row_trial).unsqueeze(1);
  const at::Tensor b = c.b.index_select(0, c.row_trial).unsqueeze(1);
  at::Tensor y = c.y + (c.x * a).sum(-1, true) * b;
  return scaled ? y * c.scale.index_select(0, c.row_trial).unsqueeze(1) : y;
}

// Measured: within 3.2 ulps of the largest output (aᵀx summed in another order than ATen's; its
// rounding error scales with Σ|x·a|, not with the output).
TEST(FusedCpuOps, AdapterMatchesTheAtenExpressionPerRowTrial) {
  at::manual_seed(5);
  for (bool scaled : {false, true}) {
    for (auto [B, T, in, out] :
         {std::array<int64_t, 4>{64, 1, 576, 576}, {64, 1, 1536, 576}, {3, 11, 576, 576}}) {
      const AdapterCase c = RandomAdapter(B, T, in, out, 3);
      const at::Tensor expected = AtenAdapter(c, scaled);
      const at::Tensor got =
          fused::Adapter(c.y.clone(), c.x, c.a, c.b, scaled ? c.scale : at::Tensor(), c.row_trial);
      const float ulps = Ulps(got, expected);
      std::printf("  adapter %ldx%ldx%ld->%ld%s: %.2f ulps from ATen's\n", B, T, in, out,
                  scaled ? " scaled" : "", ulps);
      EXPECT_LE(ulps, 4.0f) << B << "x" << T << "x" << in << " scaled " << scaled;
    }
  }
}

// A trial that adapts nothing (a = 0, b = 0, scale = 1) leaves its rows bit for bit as they were:
// the frozen-layer reuse relies on it.
TEST(FusedCpuOps, AZeroAdapterLeavesItsRowsBitIdentical) {
  at::manual_seed(6);
  AdapterCase c = RandomAdapter(8, 1, 576, 576, 2);
  c.a[1].zero_();
  c.b[1].zero_();
  c.scale[1].fill_(1.0f);
  c.row_trial = at::tensor({1, 0, 1, 1, 0, 1, 0, 1}, at::kLong);
  const at::Tensor got = fused::Adapter(c.y.clone(), c.x, c.a, c.b, c.scale, c.row_trial);
  for (int64_t r = 0; r < 8; ++r) {
    if (c.row_trial[r].item<int64_t>() == 1) EXPECT_TRUE(at::equal(got[r], c.y[r])) << "row " << r;
  }
}

TEST(FusedCpuOps, RefusesARowTrialOutOfRange) {
  AdapterCase c = RandomAdapter(2, 1, 64, 64, 2);
  c.row_trial = at::tensor({0, 2}, at::kLong);
  EXPECT_THROW(fused::Adapter(c.y, c.x, c.a, c.b, c.scale, c.row_trial), c10::Error);
}

}  // namespace
}  // namespace schism::model
