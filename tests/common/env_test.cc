#include "common/env.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace {

TEST(DefaultDataDir, HonoursSchismDataThenFallsBackBesideSourceTree) {
  setenv("SCHISM_DATA", "/tmp/elsewhere", 1);
  EXPECT_EQ(schism::common::DefaultDataDir(), "/tmp/elsewhere");
  unsetenv("SCHISM_DATA");
  EXPECT_EQ(schism::common::DefaultDataDir(),
            std::string(SCHISM_SOURCE_DIR) + "/../shared/datasets");
}

}  // namespace
