#include "coordinator/pareto_front.h"

#include <gtest/gtest.h>

namespace schism::coordinator {
namespace {

std::vector<int64_t> Numbers(const std::vector<TrialScore>& trials) {
  std::vector<int64_t> out;
  for (const auto& t : trials) out.push_back(t.number);
  return out;
}

TEST(ParetoFront, KeepsNonDominatedTrialsInHereticOrder) {
  const std::vector<TrialScore> trials = {{0, 50, 0.00}, {1, 10, 0.90}, {2, 10, 0.50},
                                          {3, 30, 0.10}, {4, 30, 0.40}, {5, 5, 1.20},
                                          {6, 40, 0.10}, {7, 60, 0.00}, {8, 20, 0.30}};
  // 5 (5 refusals) < 2 (10) < 8 (20) < 3 (30) < 0 (50, KL 0); 1, 4, 6, 7 are dominated.
  EXPECT_EQ(Numbers(ParetoFront(trials)), (std::vector<int64_t>{5, 2, 8, 3, 0}));
}

TEST(ParetoFront, ExactTiesKeepTheEarlierTrialOnly) {
  EXPECT_EQ(Numbers(ParetoFront({{3, 7, 0.2}, {1, 7, 0.2}})), (std::vector<int64_t>{1}));
  EXPECT_TRUE(ParetoFront({}).empty());
}

}  // namespace
}  // namespace schism::coordinator
