#include "common/env.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace {

TEST(ConfigureProcessEnvironment, CapsOneDnnIsaButKeepsUserValue) {
  // The test main already ran it, so the variable must be set.
  ASSERT_NE(std::getenv("DNNL_MAX_CPU_ISA"), nullptr);
  setenv("DNNL_MAX_CPU_ISA", "AVX2", 1);
  schism::common::ConfigureProcessEnvironment();
  EXPECT_STREQ(std::getenv("DNNL_MAX_CPU_ISA"), "AVX2");
  unsetenv("DNNL_MAX_CPU_ISA");
  schism::common::ConfigureProcessEnvironment();
  EXPECT_STREQ(std::getenv("DNNL_MAX_CPU_ISA"), "AVX512_CORE_BF16");
}

TEST(DefaultDataDir, HonoursSchismDataThenFallsBackBesideSourceTree) {
  setenv("SCHISM_DATA", "/tmp/elsewhere", 1);
  EXPECT_EQ(schism::common::DefaultDataDir(), "/tmp/elsewhere");
  unsetenv("SCHISM_DATA");
  EXPECT_EQ(schism::common::DefaultDataDir(),
            std::string(SCHISM_SOURCE_DIR) + "/../shared/datasets");
}

}  // namespace
