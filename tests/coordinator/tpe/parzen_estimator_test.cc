// spec/tpe.md §8.5: mixture construction and log densities by hand and by Optuna.
#include "coordinator/tpe/parzen_estimator.h"

#include <gtest/gtest.h>

#include "coordinator/tpe/multi_objective.h"

namespace schism::tpe {
namespace {

TEST(ParzenEstimator, SpecExampleBelowAndAboveDensities) {
  const SearchSpace space = {{"c", *Distribution::Categorical({"a", "b"})},
                             {"x", *Distribution::Float(0, 10)}};
  // Below: t1, t2, t3 (x = 2, 4, 6; c = a, a, b) with their MOTPE weights.
  const std::vector<double> below_w = MotpeWeights({{2, 6}, {4, 4}, {6, 2}});
  const ParzenEstimator l(space, {{0, 2}, {0, 4}, {1, 6}}, below_w);
  const std::vector<double> expected_w = {0.11538461538461554, 0.3846153846153845,
                                          0.11538461538461546, 0.3846153846153845};
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(l.kernel_weights()[i], expected_w[i], 1e-15);
  EXPECT_EQ(l.mus(1), (std::vector<double>{2, 4, 6, 5}));
  EXPECT_EQ(l.sigmas(1), (std::vector<double>{2, 2, 2, 10}));
  EXPECT_NEAR(l.categorical_rows(0)[0][0], 0.8333333333333334, 1e-15);
  EXPECT_NEAR(l.categorical_rows(0)[2][0], 0.16666666666666666, 1e-15);
  // Above: t0, t4, t5, t6, t7 (x = 1, 9, 5, 7, 3; c = b, b, a, b, a), weights 1.
  const ParzenEstimator g(space, {{1, 1}, {1, 9}, {0, 5}, {1, 7}, {0, 3}},
                          std::vector<double>(5, 1.0));
  EXPECT_NEAR(g.sigmas(1)[0], 1.5294489826634603, 1e-14);

  const std::vector<std::vector<double>> points = {{0, 4}, {1, 4}, {0, 0}, {1, 9.5}};
  const double log_l[] = {-2.2861343137090437, -3.042329105207954, -3.2084761560129307,
                          -3.7871982648984637};
  const double log_g[] = {-2.619892732127595, -3.4754211733620552, -3.9401583205813258,
                          -2.7078138557161786};
  const auto got_l = l.LogPdf(points), got_g = g.LogPdf(points);
  for (size_t i = 0; i < points.size(); ++i) {
    EXPECT_NEAR(got_l[i], log_l[i], 1e-13) << i;
    EXPECT_NEAR(got_g[i], log_g[i], 1e-13) << i;
  }
}

TEST(ParzenEstimator, WithoutObservationsOnlyThePriorRemains) {
  const SearchSpace space = {{"x", *Distribution::Float(0, 1)}};
  const ParzenEstimator empty(space, {}, {});
  EXPECT_EQ(empty.kernel_weights(), std::vector<double>{1.0});
  coordinator::RandomState rng(1);
  for (const auto& c : empty.Sample(rng, 50)) {
    EXPECT_GE(c[0], 0.0);
    EXPECT_LE(c[0], 1.0);
  }
}

}  // namespace
}  // namespace schism::tpe
