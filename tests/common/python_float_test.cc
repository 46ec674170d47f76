#include "common/python_float.h"

#include <gtest/gtest.h>

namespace schism::common {
namespace {

TEST(PythonFloatRepr, MatchesPythonForBothNotations) {
  // Expected strings are Python 3 repr() outputs.
  const std::pair<double, const char*> cases[] = {
      {1.0, "1.0"},
      {0.1, "0.1"},
      {-2.5, "-2.5"},
      {1e-05, "1e-05"},
      {0.0001, "0.0001"},
      {1e16, "1e+16"},
      {1e15, "1000000000000000.0"},
      {123456.789, "123456.789"},
      {0.30000000000000004, "0.30000000000000004"},
      {12.4, "12.4"},
      {27.900000000000002, "27.900000000000002"},
      {1.2345678901234568e+17, "1.2345678901234568e+17"},
      {5e-324, "5e-324"},
      {0.0, "0.0"},
      {-0.0, "-0.0"},
      {100.0, "100.0"},
      {3.14e-7, "3.14e-07"}};
  for (auto [value, expected] : cases) EXPECT_EQ(PythonFloatRepr(value), expected);
}

}  // namespace
}  // namespace schism::common
