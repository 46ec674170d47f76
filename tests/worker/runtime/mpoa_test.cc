#include "worker/runtime/mpoa.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace schism::model {
namespace {

struct Case {
  at::Tensor w, v;
};

Case RandomCase(int64_t seed) {
  at::manual_seed(seed);
  Case c;
  c.w = at::randn({48, 80}, at::kDouble).to(at::kFloat);
  c.w[7].zero_();  // a zero row keeps scale 1
  c.v = at::randn({48});
  c.v = c.v / c.v.norm();
  return c;
}

// The dense formulas of docs/algorithm.md#mpoa, in float64.
at::Tensor DenseReference(const at::Tensor& w32, const at::Tensor& v32, double lambda,
                          RowNormalization mode) {
  auto w = w32.to(at::kDouble), v = v32.to(at::kDouble);
  auto projector = at::outer(v, v);
  if (mode == RowNormalization::kNone) return w - lambda * at::matmul(projector, w);
  auto n = w.norm(2, {1}, true);
  auto w_hat = at::where(n > 0, w / n, at::zeros_like(w));
  auto ablated = w_hat - lambda * at::matmul(projector, w_hat);
  if (mode == RowNormalization::kPre) return n * ablated;
  auto ablated_norm = ablated.norm(2, {1}, true);
  return at::where(n > 0, n * ablated / ablated_norm, w);
}

TEST(Mpoa, EachModeEqualsTheDenseFormula) {
  for (int64_t seed : {1, 2, 3}) {
    Case c = RandomCase(seed);
    const auto norms = c.w.norm(2, {1});
    for (auto mode : {RowNormalization::kNone, RowNormalization::kPre, RowNormalization::kFull}) {
      for (double lambda : {0.3, 1.0, 1.4}) {
        MpoaAdapter adapter = ComputeMpoaAdapter(c.w, norms, c.v, lambda, mode);
        EXPECT_EQ(adapter.scale.defined(), mode == RowNormalization::kFull);
        auto got = EffectiveWeight(c.w, adapter).to(at::kDouble);
        auto want = DenseReference(c.w, c.v, lambda, mode);
        EXPECT_LT(((got - want).abs().max() / want.abs().max()).item<double>(), 1e-6)
            << "mode " << static_cast<int>(mode) << " lambda " << lambda;
      }
    }
  }
}

TEST(Mpoa, FullModePreservesEveryRowNorm) {
  Case c = RandomCase(4);
  const auto norms = c.w.norm(2, {1});
  MpoaAdapter adapter = ComputeMpoaAdapter(c.w, norms, c.v, 1.3, RowNormalization::kFull);
  auto effective = EffectiveWeight(c.w, adapter);
  auto rel = (effective.norm(2, {1}) - norms).abs() / norms.clamp_min(1e-30);
  rel[7] = 0;  // the zero row
  EXPECT_LT(rel.max().item<float>(), 1e-5f);
  EXPECT_EQ(adapter.scale[7].item<float>(), 1.0f);
}

TEST(Mpoa, UnitStrengthWithoutNormalizationRemovesTheDirectionFromTheOutput) {
  Case c = RandomCase(5);
  MpoaAdapter adapter =
      ComputeMpoaAdapter(c.w, c.w.norm(2, {1}), c.v, 1.0, RowNormalization::kNone);
  auto x = at::randn({80, 16});
  auto y = at::matmul(EffectiveWeight(c.w, adapter), x);
  EXPECT_LT(at::matmul(c.v.unsqueeze(0), y).abs().max().item<float>(), 1e-4f);
  EXPECT_GT(at::matmul(c.v.unsqueeze(0), at::matmul(c.w, x)).abs().max().item<float>(), 0.1f);
}

TEST(Mpoa, ParseRowNormalizationNamesBadValues) {
  EXPECT_EQ(*ParseRowNormalization("full"), RowNormalization::kFull);
  auto bad = ParseRowNormalization("partial");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("partial"), std::string::npos);
}

}  // namespace
}  // namespace schism::model
