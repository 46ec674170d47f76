#include "worker/reconnect_backoff.h"

#include <gtest/gtest.h>

namespace schism::worker {
namespace {

using std::chrono::milliseconds;

TEST(ReconnectBackoff, GrowsExponentiallyWithJitterUpToTheCap) {
  ReconnectBackoff backoff(milliseconds(100), milliseconds(1000), /*seed=*/1);
  const int64_t ceilings[] = {100, 200, 400, 800, 1000, 1000, 1000};
  for (int64_t ceiling : ceilings) {
    const int64_t d = backoff.NextDelay().count();
    EXPECT_GE(d, ceiling / 2);
    EXPECT_LE(d, ceiling);
  }
}

TEST(ReconnectBackoff, ResetStartsOverAndSeedsGiveDifferentJitter) {
  ReconnectBackoff a(milliseconds(1000), milliseconds(60000), 1);
  for (int i = 0; i < 5; ++i) a.NextDelay();
  a.Reset();
  EXPECT_LE(a.NextDelay().count(), 1000);

  ReconnectBackoff b(milliseconds(1000), milliseconds(60000), 2);
  ReconnectBackoff c(milliseconds(1000), milliseconds(60000), 3);
  bool differs = false;
  for (int i = 0; i < 8; ++i) differs |= b.NextDelay() != c.NextDelay();
  EXPECT_TRUE(differs);
}

}  // namespace
}  // namespace schism::worker
