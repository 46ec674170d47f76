// spec/tpe.md §8.3 and §8.4: ranks, split, HSSP and MOTPE weights, tie-breaking included.
#include "coordinator/tpe/multi_objective.h"

#include <gtest/gtest.h>

namespace schism::tpe {
namespace {

const std::vector<LossVector> kEight = {{1, 9}, {2, 6}, {4, 4}, {6, 2},
                                        {9, 1}, {5, 5}, {7, 7}, {3, 8}};

TEST(MultiObjective, NonDominationRanks) {
  EXPECT_EQ(NonDominationRanks(kEight, 8), (std::vector<int>{0, 0, 0, 0, 0, 1, 2, 1}));
  EXPECT_EQ(NonDominationRanks(kEight, 5), (std::vector<int>{0, 0, 0, 0, 0, 1, 1, 1}));
}

TEST(MultiObjective, SplitTableOfTheSpec) {
  const std::vector<std::vector<size_t>> below = {{},
                                                  {2},
                                                  {1, 2},
                                                  {1, 2, 3},
                                                  {0, 1, 2, 3},
                                                  {0, 1, 2, 3, 4},
                                                  {0, 1, 2, 3, 4, 7},
                                                  {0, 1, 2, 3, 4, 5, 7},
                                                  {0, 1, 2, 3, 4, 5, 6, 7}};
  for (size_t k = 0; k <= 8; ++k) EXPECT_EQ(SplitBelowMultiObjective(kEight, k), below[k]) << k;
}

TEST(MultiObjective, HsspOrderAndTieBreaks) {
  const std::vector<LossVector> front(kEight.begin(), kEight.begin() + 5);
  const std::vector<size_t> ids = {0, 1, 2, 3, 4};
  const LossVector ref = ReferencePoint(front);
  EXPECT_EQ(ref, (LossVector{9.9, 9.9}));
  EXPECT_EQ(SolveHssp(front, ids, 1, ref), (std::vector<size_t>{2}));
  EXPECT_EQ(SolveHssp(front, ids, 3, ref), (std::vector<size_t>{2, 1, 3}));
  EXPECT_EQ(SolveHssp(front, ids, 4, ref), (std::vector<size_t>{2, 1, 3, 0}));

  const std::vector<LossVector> dup = {{1, 3}, {1, 3}, {2, 2}, {3, 1}};
  EXPECT_EQ(SolveHssp(dup, {10, 11, 12, 13}, 2, ReferencePoint(dup)),
            (std::vector<size_t>{12, 10}));
  const std::vector<LossVector> same(3, LossVector{1, 3});
  EXPECT_EQ(SolveHssp(same, {10, 11, 12}, 2, ReferencePoint(same)), (std::vector<size_t>{10, 11}));
  const std::vector<LossVector> unsorted = {{3, 1}, {1, 3}, {2, 2}};
  EXPECT_EQ(SolveHssp(unsorted, {20, 21, 22}, 1, ReferencePoint(unsorted)),
            (std::vector<size_t>{22}));
  EXPECT_EQ(SolveHssp(unsorted, {20, 21, 22}, 2, ReferencePoint(unsorted)),
            (std::vector<size_t>{22, 21}));
}

TEST(MultiObjective, MotpeWeightsTable) {
  EXPECT_EQ(MotpeWeights({{2, 6}, {4, 4}, {6, 2}}),
            (std::vector<double>{0.3000000000000005, 1.0, 0.30000000000000027}));
  EXPECT_EQ(MotpeWeights({{1, 2}, {1, 2}, {2, 1}}), (std::vector<double>{1e-12, 1e-12, 1.0}));
  EXPECT_EQ(MotpeWeights({{1, 1}, {2, 2}, {0.5, 3}}),
            (std::vector<double>{1.0, 1e-12, 0.06250000000000014}));
  EXPECT_EQ(MotpeWeights({{0, 0.5}, {0.25, 0.25}, {0.5, 0}}),
            (std::vector<double>{0.20000000000000018, 1.0, 0.20000000000000018}));
  EXPECT_EQ(MotpeWeights({{-1, -2}, {-2, -1}}), (std::vector<double>{1.0, 1.0}));
  EXPECT_EQ(MotpeWeights({{3, 3}}), (std::vector<double>{1.0}));
  EXPECT_EQ(MotpeWeights({{0.1, 0.2}, {0.1, 0.2}}), (std::vector<double>{1e-12, 1e-12}));
}

TEST(MultiObjective, HypervolumeInThreeDimensionsByInclusionExclusion) {
  // Two boxes against ref (2,2,2): 1 + 1 - overlap (0.5*1*... ) computed by hand.
  EXPECT_DOUBLE_EQ(Hypervolume({{1, 1, 1}}, {2, 2, 2}), 1.0);
  EXPECT_DOUBLE_EQ(Hypervolume({{0, 1, 1}, {1, 0, 1}}, {2, 2, 2}), 2 + 2 - 1);
}

}  // namespace
}  // namespace schism::tpe
