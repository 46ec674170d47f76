#include "coordinator/random_state.h"

#include <gtest/gtest.h>

namespace schism::coordinator {
namespace {

// Check values from spec/tpe.md §3 (numpy.random.RandomState).
TEST(RandomState, MatchesNumpyUint32StreamForSeed42) {
  RandomState rng(42);
  EXPECT_EQ(rng.NextUint32(), 1608637542u);
  EXPECT_EQ(rng.NextUint32(), 3421126067u);
  EXPECT_EQ(rng.NextUint32(), 4083286876u);
  EXPECT_EQ(rng.NextUint32(), 787846414u);
}

TEST(RandomState, MatchesNumpyRandomSampleBitForBit) {
  RandomState rng42(42);
  for (double expected : {0.3745401188473625, 0.9507143064099162, 0.7319939418114051,
                          0.5986584841970366, 0.15601864044243652}) {
    EXPECT_EQ(rng42.NextDouble(), expected);
  }
  RandomState rng0(0);
  for (double expected : {0.5488135039273248, 0.7151893663724195, 0.6027633760716439}) {
    EXPECT_EQ(rng0.NextDouble(), expected);
  }
}

TEST(RandomState, UniformScalesTheSameDraw) {
  RandomState a(7), b(7);
  const double u = a.NextDouble();
  EXPECT_EQ(b.Uniform(-2.0, 3.0), -2.0 + 5.0 * u);
}

}  // namespace
}  // namespace schism::coordinator
