#include <gtest/gtest.h>

#include "common/env.h"

int main(int argc, char** argv) {
  schism::common::ConfigureProcessEnvironment();
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
