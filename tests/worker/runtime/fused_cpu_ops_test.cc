// The fused CPU kernels (fused_cpu_ops.h) against the ATen expressions they replace in the
// decoder: RoPE bit for bit, RMSNorm, the adapters and decode attention within the float32
// rounding of their sums.
#include "worker/runtime/fused_cpu_ops.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

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

struct AttentionCase {
  at::Tensor q, keys, values, visible;  // visible (B, 1, 1, S), as the decoder's mask
  std::vector<int64_t> slots;
  int64_t S;
};

// B rows in shuffled slots of a (slots, capacity, kv_heads, hd) cache; row b sees a random
// number of leading columns with random holes (left padding, a shared prefix's gap), and always
// its own last column.
AttentionCase RandomAttention(int64_t B, int64_t H, int64_t kv_heads, int64_t hd, int64_t S) {
  const int64_t slots = B + 3, capacity = S + 5;
  AttentionCase c;
  c.q = at::randn({B, 1, H, hd});
  c.keys = at::randn({slots, capacity, kv_heads, hd}) * 2;
  c.values = at::randn({slots, capacity, kv_heads, hd});
  const at::Tensor order = at::randperm(slots, at::kLong);
  for (int64_t b = 0; b < B; ++b) c.slots.push_back(order[b].item<int64_t>());
  const at::Tensor length = at::randint(1, S + 1, {B, 1}, at::kLong);
  const at::Tensor column = at::arange(S, at::kLong).view({1, S});
  at::Tensor visible = (column < length) & (at::rand({B, S}) > 0.2);
  visible.index_put_({at::arange(B, at::kLong), (length - 1).view({B})}, true);
  c.visible = visible.view({B, 1, 1, S});
  c.S = S;
  return c;
}

at::Tensor SdpaAttention(const AttentionCase& c, double scale) {
  const at::Tensor index = at::tensor(c.slots, at::kLong);
  const int64_t B = c.q.size(0), H = c.q.size(2), hd = c.q.size(3);
  auto rows = [&](const at::Tensor& cache) {
    return cache.index_select(0, index).narrow(1, 0, c.S).transpose(1, 2);  // (B, kv, S, hd)
  };
  return at::scaled_dot_product_attention(c.q.transpose(1, 2), rows(c.keys), rows(c.values),
                                          c.visible, 0.0, false, scale,
                                          /*enable_gqa=*/c.keys.size(2) != H)
      .transpose(1, 2)
      .reshape({B, 1, H * hd});
}

// Both kernels (the AVX-512 one where the CPU has it, and the portable one everywhere) against
// SDPA and a float64 reference. Measured, in units of the largest output's last place from
// float64: AVX-512 3.1, portable 4.0 (no fused multiply-add, sums in order), SDPA 3.4. A row's
// output is bit for bit the same whatever rows share its step: continuous batching changes a step's
// rows, never a row's result.
TEST(FusedCpuOps, DecodeAttentionMatchesSdpaWithGroupedHeadsAndHoles) {
  at::manual_seed(7);
  // SmolLM2 (9 heads on 3 KV heads), Qwen2.5 0.5B (14 on 2), Gemma 3 270M (4 on 1, 256 wide),
  // plain multi-head attention, a single row, a head size without an AVX-512 kernel, and S a
  // multiple of 16.
  for (auto [B, H, kv, hd, S] : {std::array<int64_t, 5>{64, 9, 3, 64, 97},
                                 {7, 14, 2, 64, 40},
                                 {5, 4, 1, 256, 33},
                                 {6, 4, 4, 32, 12},
                                 {1, 9, 3, 64, 1},
                                 {9, 6, 2, 48, 50},
                                 {4, 9, 3, 64, 32}}) {
    const AttentionCase c = RandomAttention(B, H, kv, hd, S);
    for (double scale : {1.0 / std::sqrt(static_cast<double>(hd)), 0.0625}) {
      const at::Tensor sdpa = SdpaAttention(c, scale);
      const AttentionCase in_double{c.q.to(at::kDouble),
                                    c.keys.to(at::kDouble),
                                    c.values.to(at::kDouble),
                                    c.visible,
                                    c.slots,
                                    c.S};
      const at::Tensor exact = SdpaAttention(in_double, scale).to(at::kFloat);
      const float theirs = Ulps(sdpa, exact);
      for (bool portable : {false, true}) {
        const at::Tensor got =
            fused::DecodeAttention(c.q, c.keys, c.values, c.slots, c.visible, S, scale, portable);
        ASSERT_EQ(got.sizes(), sdpa.sizes());
        const float ours = Ulps(got, exact);
        std::printf(
            "  decode attention (%s) %ld rows, %ld/%ld heads x %ld, S %ld, scale %.4f: %.2f "
            "ulps from float64 (SDPA: %.2f), %.2f from SDPA's\n",
            portable ? "portable" : "best", B, H, kv, hd, S, scale, ours, theirs, Ulps(got, sdpa));
        EXPECT_LE(ours, portable ? 4.5f : 3.5f)
            << B << " rows, " << H << "/" << kv << " heads, portable " << portable;
      }
    }
    // The last row alone, in a step of its own.
    const int64_t last = B - 1;
    for (bool portable : {false, true}) {
      const at::Tensor alone =
          fused::DecodeAttention(c.q.narrow(0, last, 1), c.keys, c.values, {c.slots[last]},
                                 c.visible.narrow(0, last, 1), S, 0.125, portable);
      const at::Tensor together =
          fused::DecodeAttention(c.q, c.keys, c.values, c.slots, c.visible, S, 0.125, portable);
      EXPECT_TRUE(at::equal(alone[0], together[last])) << B << " rows, portable " << portable;
    }
  }
}

// As SDPA: a NaN in a row's query makes that row's output NaN (and no other row's); a score that
// overflows to -inf gets no weight, and a column far below the top one gets none either.
TEST(FusedCpuOps, DecodeAttentionTreatsNonFiniteScoresAsSdpaDoes) {
  at::manual_seed(8);
  AttentionCase c = RandomAttention(3, 9, 3, 64, 20);
  c.visible.fill_(true);
  c.q[0][0][4][7] = std::numeric_limits<float>::quiet_NaN();  // row 0, head 4 (KV head 1)
  // Row 1, head 0: column 0's key overflows the product to -inf; the other columns score about
  // ±1e20, so all but the top one fall far below it.
  c.q[1][0][0].fill_(1e20f);
  c.keys[c.slots[1]][0][0].fill_(-1e20f);
  for (bool portable : {false, true}) {
    const at::Tensor got =
        fused::DecodeAttention(c.q, c.keys, c.values, c.slots, c.visible, c.S, 0.125, portable)
            .view({3, 9, 64});
    const at::Tensor sdpa = SdpaAttention(c, 0.125).view({3, 9, 64});
    EXPECT_TRUE(got[0][4].isnan().all().item<bool>()) << "portable " << portable;
    EXPECT_TRUE(sdpa[0][4].isnan().all().item<bool>());
    EXPECT_FALSE(got[0][0].isnan().any().item<bool>()) << "portable " << portable;
    EXPECT_FALSE(got[1].isnan().any().item<bool>()) << "portable " << portable;
    EXPECT_FALSE(got[2].isnan().any().item<bool>()) << "portable " << portable;
    // Head 0 of row 1: the top column takes all the weight.
    EXPECT_TRUE(at::allclose(got[1][0], sdpa[1][0], 1e-5, 1e-6)) << "portable " << portable;
  }
}

// The decoder takes the fused kernel only where it has AVX-512 code for the head size.
TEST(FusedCpuOps, DecodeAttentionIsFastOnlyWhereAnAvx512KernelServes) {
  EXPECT_FALSE(fused::DecodeAttentionHasFastKernel(48));
  EXPECT_FALSE(fused::DecodeAttentionHasFastKernel(80));
#if defined(__x86_64__) && defined(__GNUC__)
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("fma");
#else
  const bool avx512 = false;
#endif
  for (int64_t hd : {32, 64, 128, 256})
    EXPECT_EQ(fused::DecodeAttentionHasFastKernel(hd), avx512) << "head_dim " << hd;
}

// A float mask (additive, 0 / -inf) would read inverted as bool: refused, not converted.
TEST(FusedCpuOps, DecodeAttentionRefusesBadSlotsHeadsAndMasks) {
  AttentionCase c = RandomAttention(2, 9, 3, 64, 8);
  EXPECT_THROW(
      fused::DecodeAttention(c.q, c.keys, c.values, c.slots, c.visible.to(at::kFloat), c.S, 0.125),
      c10::Error);
  c.slots[1] = c.keys.size(0);
  EXPECT_THROW(fused::DecodeAttention(c.q, c.keys, c.values, c.slots, c.visible, c.S, 0.125),
               c10::Error);
  const AttentionCase d = RandomAttention(2, 8, 3, 64, 8);  // 8 query heads on 3 KV heads
  EXPECT_THROW(fused::DecodeAttention(d.q, d.keys, d.values, d.slots, d.visible, d.S, 0.125),
               c10::Error);
}

}  // namespace
}  // namespace schism::model
